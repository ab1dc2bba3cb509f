/* Audit records: built from what a task planned and wrote, sent to the
 * journal with a MESSAGE_ID per event, and echoed on stderr unless stderr
 * is the journal already, so that an `apply` from a shell leaves its trail
 * in both places and a test without journald can read it back. */
#include <sys/uio.h>
#include <syslog.h>
#include <time.h>

#include <openssl/evp.h>
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "audit.h"
#include "authkeys.h"
#include "log.h"

#define AUDIT_FIELDS 16

static const struct {
	const char *name;
	const char *id;
	int prio;
} events[AUDIT_COUNT] = {
	[AUDIT_KEY_ADDED] = { "KEY_ADDED", "4c588f99f4644e2a840d89df6fe85ace", LOG_NOTICE },
	[AUDIT_KEY_REMOVED] = { "KEY_REMOVED", "dab1d85a4cf7463f8cdefc4b3321bc6e", LOG_NOTICE },
	[AUDIT_KEY_EXPIRED] = { "KEY_EXPIRED", "f545002b50a248549ab7544a692848b8", LOG_NOTICE },
	[AUDIT_PASSWORD_LOGIN] = { "PASSWORD_LOGIN_CHANGED", "cf54b15c9a9a40fc90e685ea50491a5f", LOG_NOTICE },
	[AUDIT_PORT] = { "PORT_CHANGED", "00e0236b7b554a96b5dd82f0612af80c", LOG_NOTICE },
	[AUDIT_REFUSED_POLICY] = { "TASK_REFUSED_POLICY", "c0a20e760b0f45c9be64108bcff0f7c2", LOG_WARNING },
	[AUDIT_REFUSED_SIGNATURE] = { "TASK_REFUSED_SIGNATURE", "99b76138a8154e698ec739ec38fa6261", LOG_WARNING },
};

const char *audit_message_id(enum audit_event ev)
{
	return ev < AUDIT_COUNT ? events[ev].id : NULL;
}

void audit_sha256(const char *data, size_t len, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 0;
	if (EVP_Digest(data ? data : "", len, md, &n, EVP_sha256(), NULL) != 1 || n != sizeof(md)) {
		hex[0] = '\0';
		return;
	}
	for (size_t i = 0; i < sizeof(md); i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

struct field {
	const char *name;
	const char *value;
};

/* Values are one line already (task fields are checked at the edge); a
 * control character here is replaced rather than trusted. */
static void put_value(struct buf *b, const char *v)
{
	buf_puts(b, "\"");
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			buf_printf(b, "\\%c", *v);
		else
			buf_printf(b, "%c", (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v);
	}
	buf_puts(b, "\"");
}

static void emit_stderr(enum audit_event ev, const char *message, const struct field *f, size_t n)
{
	_cleanup_buf_ struct buf b = { 0 };
	buf_printf(&b, "kps-agent: audit %s MESSAGE_ID=%s", events[ev].name, events[ev].id);
	for (size_t i = 0; i < n; i++) {
		buf_printf(&b, " %s=", f[i].name);
		put_value(&b, f[i].value);
	}
	buf_puts(&b, " MESSAGE=");
	put_value(&b, message);
	if (b.data)
		fprintf(stderr, "%s\n", b.data);
}

static void emit_journal(enum audit_event ev, const char *message, const struct field *f, size_t n)
{
	struct iovec iov[AUDIT_FIELDS + 6];
	_cleanup_strv_ struct strv lines = { 0 };
	char *s = NULL;
	int r = 0;
	r |= asprintf(&s, "MESSAGE=%s", message) < 0 || strv_push_take(&lines, s) < 0;
	r |= asprintf(&s, "MESSAGE_ID=%s", events[ev].id) < 0 || strv_push_take(&lines, s) < 0;
	r |= asprintf(&s, "PRIORITY=%d", events[ev].prio) < 0 || strv_push_take(&lines, s) < 0;
	r |= asprintf(&s, "SYSLOG_IDENTIFIER=kps-agent") < 0 || strv_push_take(&lines, s) < 0;
	r |= asprintf(&s, "KPS_EVENT=%s", events[ev].name) < 0 || strv_push_take(&lines, s) < 0;
	for (size_t i = 0; i < n; i++)
		r |= asprintf(&s, "%s=%s", f[i].name, f[i].value) < 0 || strv_push_take(&lines, s) < 0;
	if (r)
		return;
	for (size_t i = 0; i < lines.n; i++)
		iov[i] = (struct iovec){ lines.v[i], strlen(lines.v[i]) };
	sd_journal_sendv(iov, (int)lines.n);
}

void audit_emit(enum audit_event ev, const struct audit_record *r)
{
	const struct field all[] = {
		{ "USER", r->user }, { "KEYPAIR", r->keypair }, { "FINGERPRINT", r->fingerprint },
		{ "TASK_ID", r->task_id }, { "REQUESTER", r->requester }, { "FILE", r->path },
		{ "SHA256_BEFORE", r->sha256_before }, { "SHA256_AFTER", r->sha256_after },
		{ "DETAIL", r->detail },
	};
	struct field f[AUDIT_FIELDS];
	size_t n = 0;
	if (ev >= AUDIT_COUNT)
		return;
	for (size_t i = 0; i < ELEMENTSOF(all); i++)
		if (all[i].value && all[i].value[0])
			f[n++] = all[i];
	char message[512];
	snprintf(message, sizeof(message), "%s user=%s keypair=%s%s%s task=%s%s%s", events[ev].name,
		 r->user ? r->user : "-", r->keypair ? r->keypair : "-", r->fingerprint ? " " : "",
		 r->fingerprint ? r->fingerprint : "", r->task_id ? r->task_id : "-", r->detail ? ": " : "",
		 r->detail ? r->detail : "");
	/* The journal whenever journald runs; stderr unless it is the journal. */
	if (access("/run/systemd/journal/socket", F_OK) == 0)
		emit_journal(ev, message, f, n);
	if (!log_journal())
		emit_stderr(ev, message, f, n);
}

static void hash_file(const struct plan_file *f, char before[65], char after[65])
{
	audit_sha256(f->old, f->old_len, before);
	if (f->new)
		audit_sha256(f->new, f->new_len, after);
	else
		memcpy(after, before, 65);
}

static int entries_of(const char *text, size_t len, struct authkeys_entry **v, size_t *n)
{
	struct authkeys *ak = NULL;
	*v = NULL;
	*n = 0;
	int r = authkeys_parse(text ? text : "", text ? len : 0, &ak);
	if (r == 0)
		r = authkeys_managed(ak, v, n);
	authkeys_free(ak);
	return r;
}

static bool entry_in(const struct authkeys_entry *v, size_t n, const char *fp, const char *keypair)
{
	for (size_t i = 0; i < n; i++)
		if (streq(v[i].fingerprint, fp) && (!keypair || streq(v[i].keypair, keypair)))
			return true;
	return false;
}

static void audit_expiry_text(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!t || !gmtime_r(&tt, &tm) || !strftime(buf, size, "expires %Y-%m-%dT%H:%M:%SZ", &tm))
		buf[0] = '\0';
}

/* Keys in and out of authorized_keys, from the texts before and after. */
static void audit_keys(const struct task *t, const struct plan *p)
{
	struct authkeys_entry *old = NULL, *new = NULL;
	size_t n_old = 0, n_new = 0;
	char hb[65], ha[65], detail[64];
	hash_file(&p->keys, hb, ha);
	struct audit_record r = { .user = p->user.name, .task_id = t->id, .requester = t->requester,
				  .path = p->keys.path, .sha256_before = hb, .sha256_after = ha };
	if (entries_of(p->keys.old, p->keys.old_len, &old, &n_old) < 0 ||
	    entries_of(p->keys.new, p->keys.new_len, &new, &n_new) < 0) {
		log_warnx("audit: cannot read the entries of %s", p->keys.path);
		goto out;
	}
	for (size_t i = 0; i < n_new; i++) {
		if (entry_in(old, n_old, new[i].fingerprint, new[i].keypair))
			continue;
		audit_expiry_text(new[i].expires, detail, sizeof(detail));
		r.keypair = new[i].keypair, r.fingerprint = new[i].fingerprint, r.detail = detail[0] ? detail : NULL;
		audit_emit(AUDIT_KEY_ADDED, &r);
	}
	r.detail = NULL;
	for (size_t i = 0; i < n_old; i++) {
		if (entry_in(new, n_new, old[i].fingerprint, old[i].keypair))
			continue;
		r.keypair = old[i].keypair, r.fingerprint = old[i].fingerprint;
		audit_emit(AUDIT_KEY_REMOVED, &r);
	}
	/* A line the agent did not manage: the key a keypair credential replaced. */
	r.keypair = NULL;
	r.detail = "the key the task's credential proved, replaced";
	for (size_t i = 0; i < p->n_refuse; i++) {
		if (entry_in(old, n_old, p->refuse[i].fingerprint, NULL))
			continue;
		r.fingerprint = p->refuse[i].fingerprint;
		audit_emit(AUDIT_KEY_REMOVED, &r);
	}
out:
	authkeys_entries_free(old, n_old);
	authkeys_entries_free(new, n_new);
}

void audit_task(const struct task *t, const struct plan *p, const struct sshd_settings *before)
{
	char hb[65], ha[65], detail[128];
	if (p->keys.new)
		audit_keys(t, p);
	if (p->n_conf == 0)
		return;
	hash_file(&p->conf[0], hb, ha);
	struct audit_record r = { .user = p->user.name, .task_id = t->id, .requester = t->requester,
				  .path = p->conf[0].path, .sha256_before = hb, .sha256_after = ha, .detail = detail };
	if (p->password >= 0 && before->password != p->password) {
		snprintf(detail, sizeof(detail), "PasswordAuthentication %s -> %s", before->password ? "yes" : "no",
			 p->password ? "yes" : "no");
		audit_emit(AUDIT_PASSWORD_LOGIN, &r);
	}
	if (p->port_change) {
		snprintf(detail, sizeof(detail), "Port %d -> %d", before->n_ports ? before->ports[0] : 22, p->port);
		audit_emit(AUDIT_PORT, &r);
	}
}

void audit_refused(const struct task *t, const char *user, const struct result *res)
{
	enum audit_event ev;
	if (res->code == ERR_POLICY_DENIED)
		ev = AUDIT_REFUSED_POLICY;
	else if (res->code == ERR_BAD_SIGNATURE)
		ev = AUDIT_REFUSED_SIGNATURE;
	else
		return;
	/* An unverified task's fields are not trusted: only its id is named. */
	struct audit_record r = { .task_id = res->task_id[0] ? res->task_id : NULL, .detail = res->msg };
	if (t && ev == AUDIT_REFUSED_POLICY) {
		r.user = user;
		r.requester = t->requester;
	}
	audit_emit(ev, &r);
}
