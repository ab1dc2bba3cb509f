/* faultshim: an LD_PRELOAD fault injector for kps-agent's crash and
 * fault-injection tests (tests/fault/fault_walk.py).
 *
 * Every call that changes the file system or the world outside the agent is
 * a "step": open/openat with O_WRONLY, O_RDWR or O_CREAT, write to a regular
 * file, fsync, rename/renameat, fchown, fchmod, chmod, unlink/unlinkat,
 * mkdir/mkdirat, execve/posix_spawn/fork and kill (any signal but 0). One
 * global counter runs across all of them, in the first process only (the
 * one that loaded the shim first; a forked child neither counts nor fails,
 * and execve drops LD_PRELOAD from the child's environment).
 *
 *   KPS_FAULT_LOG=path   append "N name detail" per step
 *   KPS_FAULT_STEP=N     at step N ...
 *   KPS_FAULT_ERRNO=E    ... fail the call with E (ENOSPC, EIO, EACCES, or a
 *                        number; default ENOSPC), or
 *   KPS_FAULT_KILL=1     ... raise SIGKILL right before performing it, or
 *   KPS_FAULT_STOP=1     ... raise SIGSTOP right before it, and perform it
 *                        once continued (the test kills whichever of the
 *                        daemon's processes it wants meanwhile).
 *   KPS_FAULT_ARGV0=name count only in a process whose argv[0] is name (the
 *                        daemon's exec'd worker: "kps-agent-worker"); every
 *                        other process that loads the shim counts nothing
 *   KPS_FAULT_ONCE=path  ... and only in the first such process: it claims
 *                        the walk by creating path (O_EXCL); a later one
 *                        (the worker rolling the task back) counts nothing
 *
 * Writes to sockets, pipes and ttys are not steps: libssh's traffic would
 * swamp the walk and faults there are the proof's business, not the
 * transaction's. */
/* This file defines open and open64 both: no redirection of one to the
 * other, no fortify wrappers around them. */
#undef _FILE_OFFSET_BITS
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static pid_t first_pid;
static long step_no;
static long fault_step;
static int fault_errno = ENOSPC;
static int fault_kill;
static int fault_stop;
static char log_path[4096];
static int log_fd = -1;

/* This process's argv[0], read raw: the constructor runs before main. */
static int argv0_is(const char *want)
{
	char buf[256];
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = syscall(SYS_read, fd, buf, sizeof(buf) - 1);
	syscall(SYS_close, fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strcmp(buf, want) == 0;
}

/* Whether this process is the one that counts (KPS_FAULT_ARGV0, _ONCE). */
static int counts_here(void)
{
	const char *name = getenv("KPS_FAULT_ARGV0");
	const char *once = getenv("KPS_FAULT_ONCE");
	if (name && !argv0_is(name))
		return 0;
	if (once) {
		int fd = (int)syscall(SYS_openat, AT_FDCWD, once, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return 0;
		syscall(SYS_close, fd);
	}
	return 1;
}

static void init_env(void)
{
	const char *s;
	if (!counts_here()) {
		first_pid = -1;	/* no pid: nothing here counts */
		return;
	}
	first_pid = (pid_t)syscall(SYS_getpid);
	if ((s = getenv("KPS_FAULT_STEP")))
		fault_step = strtol(s, NULL, 10);
	if ((s = getenv("KPS_FAULT_KILL")))
		fault_kill = atoi(s) != 0;
	if ((s = getenv("KPS_FAULT_STOP")))
		fault_stop = atoi(s) != 0;
	if ((s = getenv("KPS_FAULT_ERRNO"))) {
		if (!strcmp(s, "ENOSPC"))
			fault_errno = ENOSPC;
		else if (!strcmp(s, "EIO"))
			fault_errno = EIO;
		else if (!strcmp(s, "EACCES"))
			fault_errno = EACCES;
		else if (!strcmp(s, "EPERM"))
			fault_errno = EPERM;
		else if (!strcmp(s, "EDQUOT"))
			fault_errno = EDQUOT;
		else if (atoi(s) > 0)
			fault_errno = atoi(s);
	}
	if ((s = getenv("KPS_FAULT_LOG"))) {
		snprintf(log_path, sizeof(log_path), "%s", s);
		/* Opened now, as root: later steps may run under the user's fsuid. */
		log_fd = (int)syscall(SYS_openat, AT_FDCWD, log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	}
}

__attribute__((constructor)) static void faultshim_init(void)
{
	init_env();
}

static void fd_name(int fd, char *out, size_t size)
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = syscall(SYS_readlinkat, AT_FDCWD, link, out, size - 1);
	if (n < 0)
		n = snprintf(out, size, "fd%d", fd) < 0 ? 0 : (ssize_t)strnlen(out, size - 1);
	out[n] = '\0';
}

static void dir_path(int dirfd, const char *name, char *out, size_t size)
{
	if (!name)
		name = "";
	if (name[0] == '/' || dirfd == AT_FDCWD) {
		snprintf(out, size, "%s", name);
		return;
	}
	char d[2048];
	fd_name(dirfd, d, sizeof(d));
	snprintf(out, size, "%s/%s", d, name);
}

/* Raw syscalls: the shim must not count (or fault) its own log. */
static void log_step(long n, const char *name, const char *detail)
{
	if (!log_path[0])
		return;
	char line[4400];
	int len = snprintf(line, sizeof(line), "%ld %s %s\n", n, name, detail ? detail : "");
	if (len < 0)
		return;
	if ((size_t)len >= sizeof(line))
		len = (int)sizeof(line) - 1;
	for (int i = 0; i < len - 1; i++)
		if (line[i] == '\n')
			line[i] = '?';
	int e = errno;
	if (log_fd >= 0)
		(void)!syscall(SYS_write, log_fd, line, (size_t)len);
	errno = e;
}

/* Returns 0 to go on, -1 to fail the call (errno set). */
static int step(const char *name, const char *detail)
{
	if (!first_pid)
		init_env();
	if ((pid_t)syscall(SYS_getpid) != first_pid)
		return 0;
	long n = ++step_no;
	log_step(n, name, detail);
	if (fault_step <= 0 || n != fault_step)
		return 0;
	if (fault_kill) {
		raise(SIGKILL);
		syscall(SYS_kill, syscall(SYS_getpid), SIGKILL);
	}
	if (fault_stop) {
		syscall(SYS_kill, syscall(SYS_getpid), SIGSTOP);
		return 0;
	}
	errno = fault_errno;
	return -1;
}

#define REAL(ret, fn, ...)                                                  \
	static ret (*real_##fn)(__VA_ARGS__);                               \
	if (!real_##fn)                                                     \
		real_##fn = (ret (*)(__VA_ARGS__))dlsym(RTLD_NEXT, #fn)

static int writes(int flags)
{
	return (flags & (O_WRONLY | O_RDWR | O_CREAT)) != 0;
}

static mode_t mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

static int open_step(const char *fn, int dirfd, const char *path, int flags)
{
	if (!writes(flags))
		return 0;
	char p[4096];
	dir_path(dirfd, path, p, sizeof(p));
	char detail[4200];
	snprintf(detail, sizeof(detail), "%s flags=0%o", p, (unsigned)flags);
	return step(fn, detail);
}

/* The open family: one body per shape, one exported symbol per name (the
 * 64 variants and the _FORTIFY_SOURCE ones, flags without O_CREAT only). */
#define WRAP_OPEN(fn, step_name)                                              \
	EXPORT int fn(const char *path, int flags, ...)                        \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode_t mode = mode_arg(flags, ap);                             \
		va_end(ap);                                                    \
		REAL(int, fn, const char *, int, ...);                         \
		if (open_step(step_name, AT_FDCWD, path, flags) < 0)           \
			return -1;                                             \
		return real_##fn(path, flags, mode);                           \
	}
#define WRAP_OPENAT(fn, step_name)                                            \
	EXPORT int fn(int dirfd, const char *path, int flags, ...)             \
	{                                                                      \
		va_list ap;                                                    \
		va_start(ap, flags);                                           \
		mode_t mode = mode_arg(flags, ap);                             \
		va_end(ap);                                                    \
		REAL(int, fn, int, const char *, int, ...);                    \
		if (open_step(step_name, dirfd, path, flags) < 0)              \
			return -1;                                             \
		return real_##fn(dirfd, path, flags, mode);                    \
	}
#define WRAP_OPEN_2(fn, step_name)                                            \
	EXPORT int fn(const char *path, int flags)                             \
	{                                                                      \
		REAL(int, fn, const char *, int);                              \
		if (open_step(step_name, AT_FDCWD, path, flags) < 0)           \
			return -1;                                             \
		return real_##fn(path, flags);                                 \
	}
#define WRAP_OPENAT_2(fn, step_name)                                          \
	EXPORT int fn(int dirfd, const char *path, int flags)                  \
	{                                                                      \
		REAL(int, fn, int, const char *, int);                         \
		if (open_step(step_name, dirfd, path, flags) < 0)              \
			return -1;                                             \
		return real_##fn(dirfd, path, flags);                          \
	}

WRAP_OPEN(open, "open")
WRAP_OPEN(open64, "open")
WRAP_OPENAT(openat, "openat")
WRAP_OPENAT(openat64, "openat")
WRAP_OPEN_2(__open_2, "open")
WRAP_OPEN_2(__open64_2, "open")
WRAP_OPENAT_2(__openat_2, "openat")
WRAP_OPENAT_2(__openat64_2, "openat")

EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
	REAL(ssize_t, write, int, const void *, size_t);
	struct stat st;
	if ((pid_t)syscall(SYS_getpid) == first_pid && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		char p[4096], detail[4200];
		fd_name(fd, p, sizeof(p));
		snprintf(detail, sizeof(detail), "%s len=%zu", p, len);
		if (step("write", detail) < 0)
			return -1;
	}
	return real_write(fd, buf, len);
}

/* A step on an fd, named by its path. */
static int fd_step(const char *fn, int fd)
{
	char p[4096];
	fd_name(fd, p, sizeof(p));
	return step(fn, p);
}

EXPORT int fsync(int fd)
{
	REAL(int, fsync, int);
	if (fd_step("fsync", fd) < 0)
		return -1;
	return real_fsync(fd);
}

EXPORT int fdatasync(int fd)
{
	REAL(int, fdatasync, int);
	if (fd_step("fdatasync", fd) < 0)
		return -1;
	return real_fdatasync(fd);
}

EXPORT int rename(const char *from, const char *to)
{
	REAL(int, rename, const char *, const char *);
	char detail[8300];
	snprintf(detail, sizeof(detail), "%s -> %s", from, to);
	if (step("rename", detail) < 0)
		return -1;
	return real_rename(from, to);
}

/* renameat and renameat2 are one step kind: the walk names them alike. */
static int renameat_step(int fromfd, const char *from, int tofd, const char *to)
{
	char a[4096], b[4096], detail[8300];
	dir_path(fromfd, from, a, sizeof(a));
	dir_path(tofd, to, b, sizeof(b));
	snprintf(detail, sizeof(detail), "%s -> %s", a, b);
	return step("renameat", detail);
}

EXPORT int renameat(int fromfd, const char *from, int tofd, const char *to)
{
	REAL(int, renameat, int, const char *, int, const char *);
	if (renameat_step(fromfd, from, tofd, to) < 0)
		return -1;
	return real_renameat(fromfd, from, tofd, to);
}

EXPORT int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned flags)
{
	REAL(int, renameat2, int, const char *, int, const char *, unsigned);
	if (renameat_step(fromfd, from, tofd, to) < 0)
		return -1;
	return real_renameat2(fromfd, from, tofd, to, flags);
}

EXPORT int fchown(int fd, uid_t uid, gid_t gid)
{
	REAL(int, fchown, int, uid_t, gid_t);
	char p[4096], detail[4200];
	fd_name(fd, p, sizeof(p));
	snprintf(detail, sizeof(detail), "%s %u:%u", p, (unsigned)uid, (unsigned)gid);
	if (step("fchown", detail) < 0)
		return -1;
	return real_fchown(fd, uid, gid);
}

EXPORT int fchmod(int fd, mode_t mode)
{
	REAL(int, fchmod, int, mode_t);
	char p[4096], detail[4200];
	fd_name(fd, p, sizeof(p));
	snprintf(detail, sizeof(detail), "%s %03o", p, (unsigned)mode);
	if (step("fchmod", detail) < 0)
		return -1;
	return real_fchmod(fd, mode);
}

EXPORT int chmod(const char *path, mode_t mode)
{
	REAL(int, chmod, const char *, mode_t);
	char detail[4200];
	snprintf(detail, sizeof(detail), "%s %03o", path, (unsigned)mode);
	if (step("chmod", detail) < 0)
		return -1;
	return real_chmod(path, mode);
}

EXPORT int unlink(const char *path)
{
	REAL(int, unlink, const char *);
	if (step("unlink", path) < 0)
		return -1;
	return real_unlink(path);
}

EXPORT int unlinkat(int dirfd, const char *path, int flags)
{
	REAL(int, unlinkat, int, const char *, int);
	char p[4096];
	dir_path(dirfd, path, p, sizeof(p));
	if (step("unlinkat", p) < 0)
		return -1;
	return real_unlinkat(dirfd, path, flags);
}

EXPORT int mkdir(const char *path, mode_t mode)
{
	REAL(int, mkdir, const char *, mode_t);
	if (step("mkdir", path) < 0)
		return -1;
	return real_mkdir(path, mode);
}

EXPORT int mkdirat(int dirfd, const char *path, mode_t mode)
{
	REAL(int, mkdirat, int, const char *, mode_t);
	char p[4096];
	dir_path(dirfd, path, p, sizeof(p));
	if (step("mkdirat", p) < 0)
		return -1;
	return real_mkdirat(dirfd, path, mode);
}

/* Copies envp without LD_PRELOAD (when this process is the counted one,
 * its children must not count; when it is a child, same). */
static char **strip_preload(char *const envp[])
{
	size_t n = 0;
	while (envp && envp[n])
		n++;
	char **out = calloc(n + 1, sizeof(*out));
	if (!out)
		return (char **)envp;
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(envp[i], "LD_PRELOAD=", 11) != 0)
			out[k++] = envp[i];
	return out;
}

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	REAL(int, execve, const char *, char *const[], char *const[]);
	if (step("execve", path) < 0)
		return -1;
	return real_execve(path, argv, strip_preload(envp));
}

EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
		       const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	REAL(int, posix_spawn, pid_t *, const char *, const posix_spawn_file_actions_t *,
	     const posix_spawnattr_t *, char *const[], char *const[]);
	if (step("posix_spawn", path) < 0)
		return errno;
	return real_posix_spawn(pid, path, fa, attr, argv, strip_preload(envp));
}

EXPORT int posix_spawnp(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	REAL(int, posix_spawnp, pid_t *, const char *, const posix_spawn_file_actions_t *,
	     const posix_spawnattr_t *, char *const[], char *const[]);
	if (step("posix_spawn", path) < 0)
		return errno;
	return real_posix_spawnp(pid, path, fa, attr, argv, strip_preload(envp));
}

EXPORT pid_t fork(void)
{
	REAL(pid_t, fork, void);
	if (step("fork", "") < 0)
		return -1;
	return real_fork();
}

EXPORT int kill(pid_t pid, int sig)
{
	REAL(int, kill, pid_t, int);
	if (sig != 0) {
		char detail[64];
		snprintf(detail, sizeof(detail), "pid=%ld sig=%d", (long)pid, sig);
		if (step("kill", detail) < 0)
			return -1;
	}
	return real_kill(pid, sig);
}
