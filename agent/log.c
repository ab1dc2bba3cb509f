/* Journal or stderr: one module decides where a line goes and formats it. */
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>

#include "log.h"

#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"
#define LOG_ENTRY_MAX 4096

static const char *log_ident = "kps-agent";
static bool log_to_journal;
/* Our own datagram socket to journald, not libsystemd's: the daemon's
 * worker closes every descriptor it does not know (close_range), and a
 * library's hidden one would then be closed under it, its number reused by
 * the next socket opened (a probe's TCP connection) and written to as if it
 * were still the journal. This one the worker knows (log_fd) and keeps. */
static int log_journal_fd = -1;
static bool log_debug_on;

/* systemd sets JOURNAL_STREAM to our stderr's device:inode when stderr goes
 * to the journal; then we send structured entries instead of plain lines. */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	if (!e)
		return false;
	/* "dev:ino", both decimal, as systemd writes it. */
	char *end;
	errno = 0;
	unsigned long long dev = strtoull(e, &end, 10);
	if (errno || end == e || *end != ':')
		return false;
	const char *rest = end + 1;
	unsigned long long ino = strtoull(rest, &end, 10);
	if (errno || end == rest)
		return false;
	struct stat st;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

void log_init(const char *ident)
{
	if (ident)
		log_ident = ident;
	log_to_journal = stderr_is_journal();
	if (log_to_journal && log_journal_fd < 0)
		log_journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (log_journal_fd < 0)
		log_to_journal = false;
}

int log_fd(void)
{
	return log_journal_fd;
}

/* Appends KEY=VALUE\n (journald's native protocol, simple form: the value
 * has no newline, control characters become '?'), truncating the value. */
static void log_field(char *buf, size_t *len, const char *key, const char *value)
{
	int n = snprintf(buf + *len, LOG_ENTRY_MAX - *len, "%s=", key);
	if (n < 0 || (size_t)n >= LOG_ENTRY_MAX - *len - 1)
		return;
	*len += (size_t)n;
	for (const char *p = value; *p && *len < LOG_ENTRY_MAX - 1; p++) {
		buf[*len] = *p;
		if ((unsigned char)*p < 0x20)
			buf[*len] = '?';
		(*len)++;
	}
	buf[(*len)++] = '\n';
}

/* One journal entry of fields given as key, value pairs, NULL-terminated.
 * Falls back to stderr (the journal's stream, as systemd set it up) when
 * journald does not take the datagram. */
__attribute__((sentinel)) static void log_journal_send(int prio, const char *message, ...)
{
	char buf[LOG_ENTRY_MAX];
	char p[4];
	size_t len = 0;
	snprintf(p, sizeof(p), "%d", prio);
	log_field(buf, &len, "MESSAGE", message);
	log_field(buf, &len, "PRIORITY", p);
	log_field(buf, &len, "SYSLOG_IDENTIFIER", log_ident);
	va_list ap;
	va_start(ap, message);
	for (const char *k; (k = va_arg(ap, const char *));)
		log_field(buf, &len, k, va_arg(ap, const char *));
	va_end(ap);
	static const struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = LOG_JOURNAL_SOCKET };
	if (sendto(log_journal_fd, buf, len, MSG_NOSIGNAL, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
		fprintf(stderr, "%s: %s\n", log_ident, message);
}

void log_set_debug(bool on)
{
	log_debug_on = on;
}

bool log_debug_enabled(void)
{
	return log_debug_on;
}

bool log_journal(void)
{
	return log_to_journal;
}

__attribute__((format(printf, 2, 0))) static void log_vemit(int prio, const char *fmt, va_list ap, int errnum)
{
	char line[1024];
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (errnum) {
		size_t used = strnlen(line, sizeof(line));
		snprintf(line + used, sizeof(line) - used, ": %s", strerror(errnum));
	}
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
	if (log_to_journal)
		log_journal_send(prio, line, (const char *)NULL);
	else
		fprintf(stderr, "%s: %s\n", log_ident, line);
}

#define LOG_BODY(prio, errnum)                  \
	do {                                    \
		va_list ap;                     \
		va_start(ap, fmt);              \
		log_vemit(prio, fmt, ap, errnum); \
		va_end(ap);                     \
	} while (0)

void log_debug(const char *fmt, ...)
{
	if (!log_debug_on)
		return;
	LOG_BODY(LOG_DEBUG, 0);
}

void log_info(const char *fmt, ...)
{
	LOG_BODY(LOG_INFO, 0);
}

void log_warn(const char *fmt, ...)
{
	int e = errno;
	LOG_BODY(LOG_WARNING, e);
}

void log_warnx(const char *fmt, ...)
{
	LOG_BODY(LOG_WARNING, 0);
}

void fatal(const char *fmt, ...)
{
	int e = errno;
	LOG_BODY(LOG_CRIT, e);
	exit(2);
}

void fatalx(const char *fmt, ...)
{
	LOG_BODY(LOG_CRIT, 0);
	exit(2);
}

void log_task(const struct log_task *t)
{
	const char *code = t->error_code ? t->error_code : "-";
	if (!log_to_journal) {
		fprintf(stderr, "%s: task %s action=%s user=%s keypair=%s result=%s code=%s duration_ms=%lld\n",
			log_ident, t->task_id, t->action ? t->action : "-", t->user ? t->user : "-",
			t->keypair ? t->keypair : "-", t->result, code, (long long)t->duration_ms);
		return;
	}
	char msg[512];
	char ms[24];
	snprintf(msg, sizeof(msg), "task %s %s user=%s: %s %s (%lld ms)", t->task_id, t->action ? t->action : "-",
		 t->user ? t->user : "-", t->result, t->error_code ? t->error_code : "", (long long)t->duration_ms);
	snprintf(ms, sizeof(ms), "%lld", (long long)t->duration_ms);
	log_journal_send(t->error_code ? LOG_WARNING : LOG_INFO, msg, "TASK_ID", t->task_id, "SERVER_ID",
			 t->server_id ? t->server_id : "", "KEYPAIR", t->keypair ? t->keypair : "", "USER",
			 t->user ? t->user : "", "RESULT", t->result, "ERROR_CODE", code, "DURATION_MS", ms,
			 (const char *)NULL);
}
