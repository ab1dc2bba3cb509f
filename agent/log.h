/* Logging: the journal when run by systemd, plain lines on stderr otherwise.
 * The only place that formats log lines. Never pass a secret here. */
#pragma once

#include "util.h"

void log_init(const char *ident);
void log_set_debug(bool on);
bool log_debug_enabled(void);
/* True when stderr is the journal's stream (run by systemd). */
bool log_journal(void);
/* The descriptor the journal lines go out on, or -1: a process that closes
 * descriptors it does not know (the daemon's worker) keeps this one. */
int log_fd(void);
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* With strerror(errno) appended. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line per finished task, with structured fields in the journal. */
struct log_task {
	const char *task_id;
	const char *server_id;
	const char *action;
	const char *keypair;
	const char *user;
	const char *result;
	const char *error_code;
	int64_t duration_ms;
};
void log_task(const struct log_task *t);
