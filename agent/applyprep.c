/* An apply before its first write: the task checked against this VM, sshd
 * -T asked (and cached), the credential proved, the files planned, and the
 * ordered port seen to be free, labelled for sshd and reachable through
 * the socket unit. A refusal here leaves everything as it was. */
#include "applyctx.h"
#include "policy.h"
#include "selinux.h"

static int check_preconditions(const struct apply *a, const char *server_id)
{
	const struct task *t = a->task;
	if (t->has_expiry && time(NULL) > t->expires_at)
		return result_fail(a->res, ERR_EXPIRED, "task expired before it was applied");
	if (server_id && strcasecmp(server_id, t->server_id) != 0)
		return result_fail(a->res, ERR_WRONG_SERVER, "task is for server %s, this is %s", t->server_id,
				   server_id);
	return 0;
}

/* sshd -T costs tens of ms; its answer is kept in the state dir under a
 * digest of everything it depends on, and reused while that is unchanged.
 * The digest is taken before and after the call so that a file changing
 * under it is never cached with the wrong answer. */
static int sshd_query_cached(struct apply *a, struct sshd_settings *s, char *msg, size_t msglen)
{
	const char *user = a->plan.user.name;
	char before[65], after[65], name[64];
	_cleanup_free_ char *cached = NULL;
	_cleanup_buf_ struct buf raw = { 0 };
	size_t len;
	*s = (struct sshd_settings){ 0 };
	snprintf(name, sizeof(name), "sshd-T.%s", user);
	bool keyed = sshd_inputs_digest(a->cfg, user, before) == 0;
	if (keyed && journal_cache_get(a->j, name, before, &cached, &len) == 0 &&
	    sshd_settings_parse(cached, len, s) == 0)
		return 0;
	sshd_settings_free(s);
	int r = sshd_query(a->cfg, user, s, &raw, msg, msglen);
	if (r == 0 && keyed && sshd_inputs_digest(a->cfg, user, after) == 0 && streq(before, after))
		journal_cache_put(a->j, name, after, raw.data, raw.len);
	return r;
}

int applyprep_query_sshd(struct apply *a, struct sshd_settings *s)
{
	char msg[RESULT_MSG_MAX] = "";
	int r = sshd_query_cached(a, s, msg, sizeof(msg));
	if (r == -ENOENT)
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg);
	if (r == -EINVAL || r == -EBADMSG)
		return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "%s", msg);
	if (r == -ETIMEDOUT)
		return result_fail(a->res, ERR_TIMEOUT, "sshd -T did not answer in time");
	if (r < 0)
		return result_fail(a->res, ERR_IO_ERROR, "%s", msg);
	return 0;
}

static int prove_credential(struct apply *a, struct pubkey *replaced)
{
	const struct task *t = a->task;
	char msg[RESULT_MSG_MAX] = "";
	if (!a->running)
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "sshd does not answer on %s port %d",
				   a->cfg->address, a->sshd.ports[0]);
	struct proof_target tg = apply_target(a, a->sshd.ports[0]);
	switch (proof_credential(&tg, t->auth_type, &t->auth_key, replaced, msg, sizeof(msg))) {
	case PROOF_OK:
		return 0;
	case PROOF_REFUSED:
		return result_fail(a->res, ERR_AUTH_FAILED, "%s", msg);
	case PROOF_BAD_CREDENTIAL:
		return result_fail(a->res, ERR_INVALID_TASK, "%s", msg);
	case PROOF_UNREACHABLE:
	case PROOF_HOSTKEY:
		return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg);
	case PROOF_ERROR:
		break;
	}
	return result_fail(a->res, ERR_SSHD_UNREACHABLE, "%s", msg[0] ? msg : "cannot prove the credential");
}

/* The port of an "addr:port" ListenAddress as sshd -T prints it; 0 when
 * there is none. */
static int listen_entry_port(const char *entry, char *addr, size_t addrlen)
{
	const char *colon = strrchr(entry, ':');
	char *end;
	if (!colon)
		return 0;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return 0;
	snprintf(addr, addrlen, "%.*s", (int)(colon - entry), entry);
	return (int)port;
}

static void note_listen_ports(struct apply *a)
{
	const struct sshd_settings *s = &a->sshd;
	for (size_t i = 0; i < s->listen.n && a->n_listen_ports < SSHD_MAX_PORTS; i++) {
		char addr[128];
		int port = listen_entry_port(s->listen.v[i], addr, sizeof(addr));
		bool dup = false;
		for (size_t k = 0; k < a->n_listen_ports; k++)
			dup |= a->listen_ports[k] == port;
		if (port && !dup)
			a->listen_ports[a->n_listen_ports++] = port;
	}
	for (size_t i = 0; a->n_listen_ports == 0 && i < s->n_ports; i++)
		a->listen_ports[i] = s->ports[i];
	if (a->n_listen_ports == 0)
		a->n_listen_ports = s->n_ports;
}

/* Under SELinux sshd may bind only ports labelled ssh_port_t: another
 * label would have sshd fail to bind after the change. */
static int check_port_label(struct apply *a, int port)
{
	char type[128] = "";
	int r = selinux_port_type(port, type, sizeof(type));
	if (r == -ENOENT && !selinux_on())
		return 0;
	if (r < 0 && r != -ENOENT)
		return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "cannot read the SELinux policy's port labels: %s",
				   strerror(-r));
	if (r == 0 && streq(type, SELINUX_SSH_PORT_TYPE))
		return 0;
	return result_fail(a->res, ERR_SSHD_CONFIG_INVALID,
			   "SELinux labels port %d %s, not %s: sshd could not bind it; label it first with "
			   "`semanage port -a -t %s -p tcp %d`",
			   port, r == 0 ? type : "with the default port type", SELINUX_SSH_PORT_TYPE, SELINUX_SSH_PORT_TYPE,
			   port);
}

/* Before anything is written: the ordered port must be free on every
 * address sshd will listen on. A program there would make sshd fail to
 * bind it, and a sshd that binds nothing exits. */
static int check_port_free(struct apply *a)
{
	const struct plan *p = &a->plan;
	if (!p->port_change)
		return 0;
	if (check_port_label(a, p->port) < 0)
		return -1;
	for (size_t i = 0; a->running && i < a->n_listen_ports; i++)
		if (a->listen_ports[i] == p->port)
			return 0;	/* sshd holds it already */
	for (size_t i = 0; i < a->sshd.listen.n; i++) {
		char addr[128];
		if (!listen_entry_port(a->sshd.listen.v[i], addr, sizeof(addr)))
			continue;
		int r = listen_port_free(addr, p->port);
		if (r == -EADDRINUSE) {
			struct listeners now;
			long uid = listen_read(&now) == 0 ? listen_foreign(&now, p->port) : -1;
			if (now.v)
				listen_free(&now);
			if (uid >= 0)
				return result_fail(a->res, ERR_PORT_IN_USE, "port %d on %s is taken by another program (uid %ld)",
						   p->port, addr, uid);
			return result_fail(a->res, ERR_PORT_IN_USE, "port %d on %s is taken by another program", p->port,
					   addr);
		}
		if (r < 0 && r != -EINVAL)
			return result_fail(a->res, ERR_SSHD_CONFIG_INVALID, "sshd could not listen on %s port %d: %s", addr,
					   p->port, strerror(-r));
	}
	return 0;
}

/* Socket activation: the port lives in ssh.socket. A generator derives
 * its ListenStream from sshd_config: Ubuntu's own, or where the
 * distribution has none (Debian 13) the package's, from the managed
 * block's Port lines. Without either sshd's Port is not where sshd
 * listens, and the change is refused before anything changes. */
static const char *const socket_generators[] = {
	"/usr/lib/systemd/system-generators/sshd-socket-generator",
	"/lib/systemd/system-generators/sshd-socket-generator",
	"/etc/systemd/system-generators/sshd-socket-generator",
	"/usr/lib/systemd/system-generators/kps-agent-generator",
	"/lib/systemd/system-generators/kps-agent-generator",
	"/etc/systemd/system-generators/kps-agent-generator",
};

static int check_socket_port(struct apply *a)
{
	if (!a->plan.port_change)
		return 0;
	if (!a->units_known) {
		sshd_units_query(&a->units);
		a->units_known = true;
	}
	if (!a->units.ssh_socket_active)
		return 0;
	for (size_t i = 0; i < ELEMENTSOF(socket_generators); i++)
		if (access(socket_generators[i], X_OK) == 0)
			return 0;
	return result_fail(a->res, ERR_SSHD_CONFIG_INVALID,
			   "sshd is socket-activated (ssh.socket) and no generator derives the socket's ports from "
			   "sshd_config: the port lives in the socket unit (systemctl edit ssh.socket), not in sshd_config");
}

int applyprep_prepare(struct apply *a, const char *server_id, struct pubkey *replaced)
{
	const struct task *t = a->task;
	const char *user = t->user ? t->user : a->cfg->user;
	if (check_preconditions(a, server_id) < 0)
		return -1;
	int r = plan_user(user, &a->plan.user);
	if (r == -ENOENT)
		return result_fail(a->res, ERR_USER_NOT_FOUND, "no user %s", user);
	if (r < 0)
		return result_fail(a->res, ERR_IO_ERROR, "cannot look up user %s: %s", user, strerror(-r));
	if (applyprep_query_sshd(a, &a->sshd) < 0 || policy_check(a->cfg, t, &a->sshd, &a->plan, a->res) < 0)
		return -1;
	apply_step_done(a, STEP_SSHD_T);
	a->running = proof_port_open(a->cfg->address, a->sshd.ports[0], a->cfg->connect_timeout_ms);
	note_listen_ports(a);
	if (t->auth_type != AUTH_NONE && prove_credential(a, replaced) < 0)
		return -1;
	apply_step_done(a, STEP_PROVE);
	if (plan_keys(&a->plan, a->cfg, &a->sshd, t, replaced->type ? replaced : NULL, a->res) < 0)
		return -1;
	r = plan_sshd_config(&a->plan, a->cfg, &a->sshd, t, a->res);
	if (r == 0)
		r = check_port_free(a);
	if (r == 0)
		r = check_socket_port(a);
	apply_step_done(a, STEP_PLAN);
	return r;
}
