/* Works out a task's change from the files as they are: the sshd_config
 * side here (the managed block, a port change made before it breaks, the
 * penalty exemption, the vendor layout), the authorized_keys side in
 * plankeys.c, the Match blocks in planmatch.c, the files in planfile.c. */
#include <fnmatch.h>
#include <glob.h>
#include <pwd.h>
#include <strings.h>

#include "planfile.h"
#include "planmatch.h"
#include "sshdpenalty.h"

#define PLAN_VENDOR_DROPIN "00-kps-agent.conf"

int plan_user(const char *name, struct plan_user *u)
{
	struct passwd pw, *found = NULL;
	long size = sysconf(_SC_GETPW_R_SIZE_MAX);
	_cleanup_free_ char *buf = malloc(size > 0 ? (size_t)size : 16384);
	if (!buf)
		return -ENOMEM;
	int r = getpwnam_r(name, &pw, buf, size > 0 ? (size_t)size : 16384, &found);
	if (r != 0)
		return -r;
	if (!found)
		return -ENOENT;
	if (!pw.pw_dir || pw.pw_dir[0] != '/')
		return -ENOENT;
	*u = (struct plan_user){ .name = strdup(name), .uid = pw.pw_uid, .gid = pw.pw_gid, .home = strdup(pw.pw_dir) };
	return u->name && u->home ? 0 : -ENOMEM;
}

/* Every Port line sshd reads must yield to the new one, drop-ins too. */
/* NOLINTNEXTLINE(misc-no-recursion): depth <= PLAN_INCLUDE_DEPTH */
static int plan_includes(struct plan *p, size_t index, int depth, struct result *res)
{
	_cleanup_strv_ struct strv pats = { 0 };
	if (depth > PLAN_INCLUDE_DEPTH)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "Include nested deeper than %d", PLAN_INCLUDE_DEPTH);
	if (sshdconf_includes(p->conf[index].old, p->conf[index].old_len, &pats) < 0)
		return result_fail(res, ERR_IO_ERROR, "out of memory");
	for (size_t i = 0; i < pats.n; i++) {
		char pattern[PATH_MAX];
		planfile_include_pattern(pats.v[i], pattern);
		glob_t g = { 0 };
		if (glob(pattern, 0, NULL, &g) != 0) {
			globfree(&g);
			continue;
		}
		int r = 0;
		for (size_t k = 0; r == 0 && k < g.gl_pathc; k++) {
			size_t before = p->n_conf;
			r = planfile_conf_index(p, g.gl_pathv[k], res) < 0 ? -1 : 0;
			if (r == 0 && p->n_conf > before)
				r = plan_includes(p, p->n_conf - 1, depth + 1, res);
		}
		globfree(&g);
		if (r < 0)
			return r;
	}
	return 0;
}

static void want_from_task(struct plan *p, const struct task *t)
{
	struct sshdconf_block *w = &p->want;
	p->password = p->kbdinteractive = -1;
	if ((t->action == TASK_DISASSOCIATE && !p->keep_password) || t->disable_password == 0) {
		/* Password login back on; keyboard-interactive back to what
		 * the admin had before the agent turned it off. */
		w->password = 1;
		w->kbdinteractive = -1;
	} else if (t->disable_password == 1) {
		w->password = 0;
		w->kbdinteractive = 0;
		p->kbdinteractive = 0;
	} else {
		return;
	}
	p->password = w->password;
}

static bool ports_are(const struct sshd_settings *s, int port)
{
	return s->n_ports == 1 && s->ports[0] == port;
}

static int write_main(const struct plan_file *f, const struct sshdconf_block *b, char **text, size_t *len,
		      struct result *res)
{
	int r = sshdconf_block_write(f->old, f->old_len, b, text, len);
	return r < 0 ? result_fail(res, ERR_SSHD_CONFIG_INVALID, "cannot edit %s: %s", f->path, strerror(-r)) : 0;
}

static int plan_port(struct plan *p, const struct sshd_settings *s, struct result *res)
{
	p->want.ports[0] = p->port;
	p->want.n_ports = 1;
	for (size_t i = 0; i < s->n_ports && i + 1 < SSHDCONF_MAX_PORTS; i++)
		p->stage1_ports[p->n_stage1_ports++] = s->ports[i];
	p->stage1_ports[p->n_stage1_ports++] = p->port;
	struct sshdconf_block stage1 = p->want;
	memcpy(stage1.ports, p->stage1_ports, sizeof(stage1.ports));
	stage1.n_ports = p->n_stage1_ports;
	if (write_main(&p->conf[p->block], &stage1, &p->main_stage1, &p->main_stage1_len, res) < 0)
		return -1;
	if (plan_includes(p, 0, 0, res) < 0)
		return -1;
	for (size_t i = 1; i < p->n_conf; i++) {
		struct plan_file *f = &p->conf[i];
		char *text;
		size_t len;
		bool changed;
		/* The vendor's files under /usr are the package's: a Port line
		 * there is one the agent cannot change (check_ports says so). */
		if (i == p->block || planfile_is_vendor(p, f->path))
			continue;
		if (sshdconf_disable_ports(f->old, f->old_len, &text, &len, &changed) < 0)
			return result_fail(res, ERR_IO_ERROR, "cannot edit %s", f->path);
		planfile_set_new(f, text, len);
	}
	return 0;
}

/* OpenSSH 9.8+ penalises an address whose connections end without a login
 * (PerSourcePenalties): the agent's refused proofs and its probes do, by
 * design, and a penalised [sshd] address would fail every later proof and
 * probe. Where sshd penalises it, the managed block exempts it, keeping
 * the admin's own exemptions (the block's line comes first and wins). */
static int want_penalty_exempt(struct plan *p, const struct config *cfg, const struct sshd_settings *s,
			       struct result *res)
{
	const char *addr = streq(cfg->address, "localhost") ? "127.0.0.1" : cfg->address;
	const char *base = p->want.penalty_exempt[0] ? p->want.penalty_exempt : s->penalty_exempt;
	char list[SSHDCONF_EXEMPT_MAX];
	int r = sshdpenalty_exempt_add(s->penalties, s->penalty_exempt, base, addr, list, sizeof(list));
	if (r == -ENOSPC)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "PerSourcePenaltyExemptList would be longer than %zu bytes with %s added", sizeof(list) - 1,
				   addr);
	if (r > 0)
		memcpy(p->want.penalty_exempt, list, strlen(list) + 1);
	return 0;
}

/* No /etc/ssh/sshd_config, the vendor's under /usr (openSUSE, SLES 16):
 * creating the /etc one would replace the whole vendor config, so the block
 * goes into a drop-in of its own in the directory the vendor config
 * includes, named to sort first. */
static int plan_vendor_block(struct plan *p, const struct config *cfg, struct result *res)
{
	_cleanup_strv_ struct strv pats = { 0 };
	char dropin[PATH_MAX];
	const char *slash = strrchr(cfg->sshd_config, '/');
	int dirlen = slash ? (int)(slash - cfg->sshd_config) : 0;
	snprintf(dropin, sizeof(dropin), "%.*s/sshd_config.d/" PLAN_VENDOR_DROPIN, dirlen, cfg->sshd_config);
	if (sshdconf_includes(p->conf[0].old, p->conf[0].old_len, &pats) < 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "cannot read the Include lines of %s", p->conf[0].path);
	bool included = false;
	for (size_t i = 0; !included && i < pats.n; i++) {
		char pattern[PATH_MAX];
		planfile_include_pattern(pats.v[i], pattern);
		included = fnmatch(pattern, dropin, FNM_PATHNAME) == 0;
	}
	if (!included)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "%s does not exist and the vendor config %s includes no %.*s/sshd_config.d: no place for the "
				   "agent's settings",
				   cfg->sshd_config, p->conf[0].path, dirlen, cfg->sshd_config);
	ssize_t at = planfile_conf_index(p, dropin, res);
	if (at < 0)
		return -1;
	struct plan_file *f = &p->conf[at];
	if (!f->st.exists) {
		f->uid = 0;
		f->gid = 0;
		f->mode = 0644;
	}
	p->block = (size_t)at;
	return 0;
}

int plan_sshd_config(struct plan *p, const struct config *cfg, const struct sshd_settings *s, const struct task *t,
		     struct result *res)
{
	char vendor_path[PATH_MAX];
	bool vendor;
	const char *top = sshd_main_config(cfg, vendor_path, sizeof(vendor_path), &vendor);
	if (planfile_conf_index(p, top, res) != 0)
		return -1;
	p->block = 0;
	if (vendor) {
		p->vendor_dir = strndup(top, (size_t)(strrchr(top, '/') - top));
		if (!p->vendor_dir)
			return result_fail(res, ERR_IO_ERROR, "out of memory");
		if (plan_vendor_block(p, cfg, res) < 0)
			return -1;
	}
	struct plan_file *main = &p->conf[p->block];
	int r = sshdconf_block_read(main->old, main->old_len, &p->want);
	if (r < 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "the kps-agent block in %s is damaged", main->path);
	want_from_task(p, t);
	if (want_penalty_exempt(p, cfg, s, res) < 0)
		return -1;
	if (t->port && !ports_are(s, t->port)) {
		p->port = t->port;
		p->port_change = true;
		if (plan_port(p, s, res) < 0)
			return -1;
	}
	char *text;
	size_t len;
	if (write_main(main, &p->want, &text, &len, res) < 0)
		return -1;
	planfile_set_new(main, text, len);
	return planmatch_check(p, s, res);
}

static bool port_in(const int *ports, size_t n, int port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

/* The port after a ListenAddress's last colon; 0, which no plan wants,
 * when it is not a port number. */
static int listen_port(const char *s)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || v < 0 || v > 65535)
		return 0;
	return (int)v;
}

static int check_ports(const struct plan *p, const struct sshd_settings *s, bool stage1, struct result *res)
{
	const int *want = stage1 ? p->stage1_ports : &p->port;
	size_t n = stage1 ? p->n_stage1_ports : 1;
	for (size_t i = 0; i < s->n_ports; i++)
		if (!port_in(want, n, s->ports[i]))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID,
					   "sshd would still listen on port %d: a Port line the agent cannot change",
					   s->ports[i]);
	for (size_t i = 0; i < n; i++)
		if (!port_in(s->ports, s->n_ports, want[i]))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID, "sshd would not listen on port %d", want[i]);
	for (size_t i = 0; i < s->listen.n; i++) {
		const char *colon = strrchr(s->listen.v[i], ':');
		if (colon && !port_in(want, n, listen_port(colon + 1)))
			return result_fail(res, ERR_SSHD_CONFIG_INVALID,
					   "ListenAddress %s keeps its own port", s->listen.v[i]);
	}
	return 0;
}

int plan_check_effective(const struct plan *p, const struct sshd_settings *s, bool stage1, struct result *res)
{
	const char *u = p->user.name;
	if (p->password >= 0 && s->password != p->password)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "PasswordAuthentication for user %s stays %s: a Match block or an earlier line overrides it",
				   u, s->password ? "yes" : "no");
	if (p->kbdinteractive == 0 && s->kbdinteractive != 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID,
				   "KbdInteractiveAuthentication for user %s stays yes: a Match block overrides it", u);
	if (p->n_accept && s->pubkey == 0)
		return result_fail(res, ERR_SSHD_CONFIG_INVALID, "PubkeyAuthentication is off for user %s", u);
	if (p->port_change)
		return check_ports(p, s, stage1, res);
	return 0;
}

void plan_free(struct plan *p)
{
	plan_keys_reset(p);
	for (size_t i = 0; i < p->n_conf; i++)
		planfile_free(&p->conf[i]);
	free(p->main_stage1);
	free(p->vendor_dir);
	free(p->user.name);
	free(p->user.home);
	*p = (struct plan){ 0 };
}
