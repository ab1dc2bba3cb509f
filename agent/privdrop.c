/* Dropping the network side's privileges (privdrop.h), as OpenSSH's
 * sshd-session and OpenBSD's ntpd do for their network children: groups,
 * then the user, then the filter. Where they chroot into an empty
 * directory, the filter here lets no file be opened at all: that holds
 * under the unit's own filter too, which keeps chroot(2) out. */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <seccomp.h>

#include "log.h"
#include "privdrop.h"
#include "util.h"

#define PRIVDROP_FALLBACK_USER "nobody"

static int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid)
{
	errno = 0;
	const struct passwd *pw = user && *user ? getpwnam(user) : NULL;
	if (!pw) {
		log_warnx("unprivileged_user %s: %s; the network side runs as %s", user && *user ? user : "(empty)",
			  errno ? strerror(errno) : "no such user", PRIVDROP_FALLBACK_USER);
		pw = getpwnam(PRIVDROP_FALLBACK_USER);
	}
	if (!pw || pw->pw_uid == 0) {
		log_warnx("no unprivileged user to run the network side as");
		return -ESRCH;
	}
	*uid = pw->pw_uid;
	*gid = pw->pw_gid;
	return 0;
}

static int privdrop_become(const char *user)
{
	uid_t uid;
	gid_t gid;
	int r = privdrop_lookup(user, &uid, &gid);
	if (r < 0)
		return r;
	if (chdir("/") < 0)
		return -errno;
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -errno;
	/* A drop that could be undone is no drop. */
	if (setuid(0) == 0 || seteuid(0) == 0)
		return -EPERM;
	return 0;
}

/* What the loop, libevent, OpenSSL and the resolver call once set up. */
static const int privdrop_allowed[] = {
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(recvfrom), SCMP_SYS(sendto),
	SCMP_SYS(recvmmsg), SCMP_SYS(sendmmsg),
	SCMP_SYS(connect), SCMP_SYS(accept), SCMP_SYS(accept4), SCMP_SYS(shutdown),
	SCMP_SYS(getsockopt), SCMP_SYS(setsockopt), SCMP_SYS(getsockname), SCMP_SYS(getpeername),
	SCMP_SYS(bind),
	SCMP_SYS(close), SCMP_SYS(fcntl), SCMP_SYS(ioctl), SCMP_SYS(dup), SCMP_SYS(fstat),
	SCMP_SYS(newfstatat), SCMP_SYS(lseek),
	SCMP_SYS(epoll_create1), SCMP_SYS(epoll_ctl), SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait),
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(select), SCMP_SYS(pselect6),
	SCMP_SYS(eventfd2), SCMP_SYS(pipe2), SCMP_SYS(timerfd_create), SCMP_SYS(timerfd_settime),
	SCMP_SYS(clock_gettime), SCMP_SYS(gettimeofday), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
	SCMP_SYS(mlock), SCMP_SYS(munlock),
	SCMP_SYS(rt_sigaction), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(sigaltstack),
	SCMP_SYS(getpid), SCMP_SYS(gettid), SCMP_SYS(getuid), SCMP_SYS(geteuid), SCMP_SYS(getgid),
	SCMP_SYS(getegid), SCMP_SYS(getrandom), SCMP_SYS(futex), SCMP_SYS(sched_yield),
	SCMP_SYS(restart_syscall), SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(uname),
	SCMP_SYS(tgkill), SCMP_SYS(getrusage),
};

/* A call the filter does not allow: named on stderr (the journal), then
 * the process ends and the monitor starts another. */
static void privdrop_sigsys(int sig, siginfo_t *si, void *ctx)
{
	char msg[96] = "kps-agent-net: system call ";
	size_t n = strlen(msg);
	char digits[12];
	size_t k = 0;
	unsigned nr = (unsigned)si->si_syscall;
	(void)sig;
	(void)ctx;
	do
		digits[k++] = (char)('0' + nr % 10);
	while ((nr /= 10) && k < sizeof(digits));
	while (k)
		msg[n++] = digits[--k];
	static const char tail[] = " is not allowed to the network side; exiting\n";
	memcpy(msg + n, tail, sizeof(tail) - 1);
	n += sizeof(tail) - 1;
	(void)!write(STDERR_FILENO, msg, n);
	_exit(159);
}

/* Allows call when its argument arg compares so (libseccomp's SCMP_A*
 * macros leave fields to the compiler). */
static int privdrop_rule_arg(scmp_filter_ctx ctx, int call, unsigned arg, enum scmp_compare op, scmp_datum_t a,
			     scmp_datum_t b)
{
	const struct scmp_arg_cmp cmp = { .arg = arg, .op = op, .datum_a = a, .datum_b = b };
	return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, call, 1, &cmp);
}

int privdrop_seccomp(void)
{
	struct sigaction sa = { .sa_sigaction = privdrop_sigsys, .sa_flags = SA_SIGINFO };
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; r == 0 && i < ELEMENTSOF(privdrop_allowed); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, privdrop_allowed[i], 0);
	/* No file at all: the token, the CA bundle and the resolver's files
	 * were read before the filter. A lookup finds nothing. */
	static const int no_files[] = { SCMP_SYS(open), SCMP_SYS(openat), SCMP_SYS(openat2), SCMP_SYS(creat),
					SCMP_SYS(access), SCMP_SYS(faccessat), SCMP_SYS(faccessat2),
					SCMP_SYS(readlink), SCMP_SYS(readlinkat), SCMP_SYS(statx), SCMP_SYS(stat),
					SCMP_SYS(lstat) };
	for (size_t i = 0; r == 0 && i < ELEMENTSOF(no_files); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOENT), no_files[i], 0);
	/* Sockets for the control plane and the resolver only. */
	static const int families[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; r == 0 && i < ELEMENTSOF(families); i++)
		r = privdrop_rule_arg(ctx, SCMP_SYS(socket), 0, SCMP_CMP_EQ, (scmp_datum_t)families[i], 0);
	/* Memory is never made executable. */
	if (r == 0)
		r = privdrop_rule_arg(ctx, SCMP_SYS(mprotect), 2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	if (r == 0)
		r = privdrop_rule_arg(ctx, SCMP_SYS(mmap), 2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r;
}

int privdrop_network_side(const char *user)
{
	if (geteuid() == 0) {
		int r = privdrop_become(user);
		if (r < 0)
			return r;
	} else {
		log_debug("network side: not started as root; keeping uid %u", (unsigned)getuid());
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -errno;
	return privdrop_seccomp();
}
