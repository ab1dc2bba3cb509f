/* Journal or stderr: one module decides where a line goes and formats it. */
#include <stdarg.h>
#include <syslog.h>
#include <sys/stat.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"

static const char *log_ident = "kps-agent";
static bool log_to_journal;
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
}

void log_set_debug(bool on)
{
	log_debug_on = on;
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
		sd_journal_send("MESSAGE=%s", line, "PRIORITY=%i", prio, "SYSLOG_IDENTIFIER=%s", log_ident,
				NULL);
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
	sd_journal_send("MESSAGE=task %s %s user=%s: %s %s (%lld ms)", t->task_id, t->action ? t->action : "-",
			t->user ? t->user : "-", t->result, t->error_code ? t->error_code : "",
			(long long)t->duration_ms, "PRIORITY=%i", t->error_code ? LOG_WARNING : LOG_INFO,
			"SYSLOG_IDENTIFIER=%s", log_ident, "TASK_ID=%s", t->task_id, "SERVER_ID=%s",
			t->server_id ? t->server_id : "", "KEYPAIR=%s", t->keypair ? t->keypair : "", "USER=%s",
			t->user ? t->user : "", "RESULT=%s", t->result, "ERROR_CODE=%s", code, NULL);
}
