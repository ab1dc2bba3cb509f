/* Dropping the network side's privileges (privdrop.h), as OpenSSH's
 * sshd-session and OpenBSD's ntpd do for their network children: root of
 * the file system first (it needs root), then groups, then the user. */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <seccomp.h>

#include "log.h"
#include "privdrop.h"
#include "util.h"

#define PRIVDROP_FALLBACK_USER "nobody"

/* An empty directory only root may change: the network side's root. */
static int privdrop_empty_dir(const char *path)
{
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return -errno;
	_cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (st.st_uid != 0 || (st.st_mode & 022)) {
		log_warnx("%s: must be owned by root and writable by no one else", path);
		return -EPERM;
	}
	DIR *d = fdopendir(fd);
	if (!d)
		return -errno;
	fd = -1;
	int r = 0;
	for (struct dirent *e; r == 0 && (e = readdir(d));)
		if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
			r = -ENOTEMPTY;
	closedir(d);
	if (r < 0)
		log_warnx("%s: must be empty (the network side's root)", path);
	return r;
}

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

static int privdrop_become(const char *user, const char *empty_dir)
{
	uid_t uid;
	gid_t gid;
	int r = privdrop_lookup(user, &uid, &gid);
	if (r == 0)
		r = privdrop_empty_dir(empty_dir);
	if (r < 0)
		return r;
	if (chroot(empty_dir) < 0 || chdir("/") < 0)
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

int privdrop_seccomp(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx)
		return -ENOMEM;
	int r = 0;
	for (size_t i = 0; r == 0 && i < ELEMENTSOF(privdrop_allowed); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, privdrop_allowed[i], 0);
	/* Sockets for the control plane and the resolver only. */
	static const int families[] = { AF_INET, AF_INET6 };
	for (size_t i = 0; r == 0 && i < ELEMENTSOF(families); i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)families[i]));
	/* Memory is never made executable. */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				     SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	return r;
}

int privdrop_network_side(const char *user, const char *empty_dir)
{
	if (geteuid() == 0) {
		int r = privdrop_become(user, empty_dir);
		if (r < 0)
			return r;
	} else {
		log_debug("network side: not started as root; keeping uid %u", (unsigned)getuid());
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return -errno;
	return privdrop_seccomp();
}
