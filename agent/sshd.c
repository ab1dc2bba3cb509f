/* `sshd -T` for the effective settings, the pid file, running sshd with a
 * deadline. Reloads are in sshdreload.c. */
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <openssl/evp.h>


#include "log.h"
#include "sshd.h"
#include "sshdconf.h"

#define SSHD_T_TIMEOUT_MS 10000
#define SSHD_OUTPUT_MAX ((size_t)1024 * 1024)

static int parse_bool(const char *v)
{
	return strcasecmp(v, "yes") == 0 ? 1 : 0;
}

static int add_port(struct sshd_settings *s, const char *v)
{
	char *end;
	long p = strtol(v, &end, 10);
	if (*end || p < 1 || p > 65535)
		return -EBADMSG;
	if (s->n_ports < SSHD_MAX_PORTS)
		s->ports[s->n_ports++] = (int)p;
	return 0;
}

/* `ListenAddress ADDR:PORT [rdomain DOMAIN]`: only the endpoint is kept. */
static int add_listen(struct sshd_settings *s, const char *v)
{
	return strv_push_take(&s->listen, strndup(v, strcspn(v, " \t")));
}

/* Keywords compare without case, as sshd reads them: up to 10.3 `sshd -T`
 * printed them in lower case, from 10.4 on as its keyword table spells them
 * ("PasswordAuthentication yes"). */
static int settings_line(struct sshd_settings *s, const char *key, const char *val)
{
	if (strcasecmp(key, "port") == 0)
		return add_port(s, val);
	if (strcasecmp(key, "listenaddress") == 0)
		return add_listen(s, val);
	if (strcasecmp(key, "hostkey") == 0)
		return strv_push(&s->hostkeys, val);
	if (strcasecmp(key, "passwordauthentication") == 0)
		s->password = parse_bool(val);
	else if (strcasecmp(key, "kbdinteractiveauthentication") == 0)
		s->kbdinteractive = parse_bool(val);
	else if (strcasecmp(key, "pubkeyauthentication") == 0)
		s->pubkey = parse_bool(val);
	else if (strcasecmp(key, "permitrootlogin") == 0 && !s->permit_root_login)
		s->permit_root_login = strdup(val);
	else if (strcasecmp(key, "pidfile") == 0 && !s->pidfile)
		s->pidfile = strdup(val);
	else if (strcasecmp(key, "persourcepenalties") == 0 && !s->penalties)
		s->penalties = strdup(val);
	else if (strcasecmp(key, "persourcepenaltyexemptlist") == 0 && !s->penalty_exempt)
		s->penalty_exempt = strdup(val);
	else if (strcasecmp(key, "authorizedkeysfile") == 0 && !s->authorized_keys_file)
		s->authorized_keys_file = strdup(val);
	return 0;
}

int sshd_settings_parse(const char *text, size_t len, struct sshd_settings *s)
{
	*s = (struct sshd_settings){ .password = -1, .kbdinteractive = -1, .pubkey = -1 };
	const char *end = text + len;
	for (const char *p = text; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[4096];
		if (n < sizeof(line)) {
			memcpy(line, p, n);
			line[n] = '\0';
			char *sp = strchr(line, ' ');
			if (sp) {
				*sp = '\0';
				int r = settings_line(s, line, sp + 1);
				if (r < 0)
					return r;
			}
		}
		p += n + (nl ? 1 : 0);
	}
	if (!s->authorized_keys_file || s->n_ports == 0 || s->password < 0 || s->kbdinteractive < 0 ||
	    s->hostkeys.n == 0)
		return -EBADMSG;
	return 0;
}

void sshd_settings_free(struct sshd_settings *s)
{
	free(s->authorized_keys_file);
	free(s->permit_root_login);
	free(s->pidfile);
	free(s->penalties);
	free(s->penalty_exempt);
	strv_free(&s->listen);
	strv_free(&s->hostkeys);
	*s = (struct sshd_settings){ 0 };
}

static void first_line(const char *text, size_t len, char *msg, size_t msglen)
{
	size_t n = strcspn(text, "\n");
	if (n > len)
		n = len;
	snprintf(msg, msglen, "%.*s", (int)n, text);
	for (char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = '?';
}

static void child_exec(char *const argv[], int out, int err)
{
	static char *const envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				      "LANG=C", "LC_ALL=C", NULL };
	int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(out, STDOUT_FILENO) < 0 ||
	    dup2(err, STDERR_FILENO) < 0)
		_exit(127);
	close_range(3, ~0U, 0);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execve(argv[0], argv, envp);
	_exit(127);
}

/* One read from a pipe poll found ready; at its end, p->fd becomes -1. */
static int drain_one(struct pollfd *p, struct buf *b)
{
	char chunk[16384];
	ssize_t got = read(p->fd, chunk, sizeof(chunk));
	if (got < 0 && errno == EINTR)
		return 0;
	if (got <= 0) {
		p->fd = -1;
		return 0;
	}
	if (b->len + (size_t)got > SSHD_OUTPUT_MAX)
		return -EFBIG;
	return buf_append(b, chunk, (size_t)got);
}

/* Reads both pipes until the child closes them or the deadline passes. */
static int drain(int out, int err, int64_t deadline, struct buf *obuf, struct buf *ebuf)
{
	struct pollfd fds[2] = { { .fd = out, .events = POLLIN }, { .fd = err, .events = POLLIN } };
	struct buf *bufs[2] = { obuf, ebuf };
	while (fds[0].fd >= 0 || fds[1].fd >= 0) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		int n = poll(fds, 2, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || !fds[i].revents)
				continue;
			int r = drain_one(&fds[i], bufs[i]);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int sshd_exec(char *const argv[], int timeout_ms, struct buf *out, char *msg, size_t msglen)
{
	int opipe[2], epipe[2];
	if (pipe2(opipe, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(epipe, O_CLOEXEC) < 0) {
		close(opipe[0]);
		close(opipe[1]);
		return -errno;
	}
	pid_t pid = fork();
	if (pid == 0)
		child_exec(argv, opipe[1], epipe[1]);
	close(opipe[1]);
	close(epipe[1]);
	_cleanup_close_ int ofd = opipe[0];
	_cleanup_close_ int efd = epipe[0];
	if (pid < 0)
		return -errno;

	_cleanup_buf_ struct buf discard = { 0 };
	_cleanup_buf_ struct buf ebuf = { 0 };
	int r = drain(ofd, efd, now_ms() + timeout_ms, out ? out : &discard, &ebuf);
	if (r < 0)
		kill(pid, SIGKILL);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (ebuf.len)
		first_line(ebuf.data, ebuf.len, msg, msglen);
	else if (msglen)
		msg[0] = '\0';
	if (r < 0)
		return r;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && access(argv[0], X_OK) < 0)
		return -ENOENT;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *sshd_main_config(const struct config *cfg, char *buf, size_t size, bool *vendor)
{
	const char *path = cfg->sshd_config;
	*vendor = false;
	if (access(path, F_OK) == 0 || errno != ENOENT)
		return path;
	/* The last "/etc/" of the path, with "/usr" put before it. */
	const char *etc = NULL;
	for (const char *p = strstr(path, "/etc/"); p; p = strstr(p + 1, "/etc/"))
		etc = p;
	if (!etc || snprintf(buf, size, "%.*s/usr%s", (int)(etc - path), path, etc) >= (int)size ||
	    access(buf, F_OK) < 0)
		return path;
	*vendor = true;
	return buf;
}

int sshd_version(const struct config *cfg)
{
	char *argv[] = { cfg->sshd_binary, "-V", NULL };
	_cleanup_buf_ struct buf out = { 0 };
	char err[256] = "";
	int r = sshd_exec(argv, SSHD_T_TIMEOUT_MS, &out, err, sizeof(err));
	if (r < 0)
		return r;
	/* "OpenSSH_9.2p1 Debian-2, OpenSSL 3.0.19", on stdout or stderr. */
	const char *v = out.data ? strstr(out.data, "OpenSSH_") : NULL;
	if (!v)
		v = strstr(err, "OpenSSH_");
	if (!v)
		return -EBADMSG;
	char *end;
	unsigned long major = strtoul(v + strlen("OpenSSH_"), &end, 10);
	if (*end != '.' || major > 99)
		return -EBADMSG;
	unsigned long minor = strtoul(end + 1, &end, 10);
	if (minor > 99)
		return -EBADMSG;
	return (int)(major * 100 + minor);
}

/* One `sshd -T -C SPEC`; lport 0 leaves the local port out of the spec. */
static int query_once(const struct config *cfg, const char *user, int lport, struct buf *out, char *err,
		      size_t errlen)
{
	char spec[320];
	const char *addr = streq(cfg->address, "localhost") ? "127.0.0.1" : cfg->address;
	int n = snprintf(spec, sizeof(spec), "user=%s,host=localhost,addr=%s,laddr=%s", user, addr, addr);
	if (lport > 0)
		snprintf(spec + n, sizeof(spec) - (size_t)n, ",lport=%d", lport);
	char main[PATH_MAX];
	bool vendor;
	char *argv[] = { cfg->sshd_binary, "-T", "-f", (char *)sshd_main_config(cfg, main, sizeof(main), &vendor), "-C",
			 spec, NULL };
	buf_free(out);
	return sshd_exec(argv, SSHD_T_TIMEOUT_MS, out, err, errlen);
}

/* The port a Match LocalPort is judged for: sshd's own first Port. */
static int query_lport(const struct config *cfg, const char *user, struct buf *out, char *err, size_t errlen)
{
	int r = query_once(cfg, user, 22, out, err, errlen);
	if (r != 0)
		return r;
	struct sshd_settings s;
	if (sshd_settings_parse(out->data ? out->data : "", out->len, &s) < 0)
		return 0;
	int port = s.ports[0];
	sshd_settings_free(&s);
	return port == 22 ? 0 : query_once(cfg, user, port, out, err, errlen);
}

int sshd_query(const struct config *cfg, const char *user, struct sshd_settings *s, struct buf *raw, char *msg,
	       size_t msglen)
{
	_cleanup_buf_ struct buf out = { 0 };
	char err[256] = "";
	int r = query_once(cfg, user, 0, &out, err, sizeof(err));
	/* sshd -T wants lport in the spec when a Match LocalPort is there,
	 * and the port is what the answer tells. */
	if (r > 0 && strstr(err, "'lport' not in connection test specification"))
		r = query_lport(cfg, user, &out, err, sizeof(err));
	if (r == -ENOENT || access(cfg->sshd_binary, X_OK) < 0) {
		snprintf(msg, msglen, "no sshd at %s", cfg->sshd_binary);
		return -ENOENT;
	}
	if (r < 0) {
		snprintf(msg, msglen, "sshd -T failed: %s", strerror(-r));
		return r;
	}
	if (r != 0) {
		char main[PATH_MAX];
		bool vendor;
		snprintf(msg, msglen, "sshd -T refused %s: %s", sshd_main_config(cfg, main, sizeof(main), &vendor),
			 err[0] ? err : "no reason given");
		return -EINVAL;
	}
	r = sshd_settings_parse(out.data ? out.data : "", out.len, s);
	if (r < 0)
		snprintf(msg, msglen, "sshd -T gave no usable answer");
	else if (raw)
		*raw = out, out = (struct buf){ 0 };
	return r;
}

#define DIGEST_INCLUDE_DEPTH 8
#define DIGEST_CONFIG_MAX ((size_t)1024 * 1024)

static void digest_stat(EVP_MD_CTX *md, const char *path)
{
	struct stat st;
	char line[PATH_MAX + 160];
	int n;
	if (stat(path, &st) < 0)
		n = snprintf(line, sizeof(line), "%s absent\n", path);
	else
		n = snprintf(line, sizeof(line), "%s %lu %lu %lld %lld.%09ld %lld.%09ld %o %u %u\n", path,
			     (unsigned long)st.st_dev, (unsigned long)st.st_ino, (long long)st.st_size,
			     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec,
			     st.st_ctim.tv_nsec, (unsigned)st.st_mode, (unsigned)st.st_uid, (unsigned)st.st_gid);
	if (n > 0)
		EVP_DigestUpdate(md, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static int read_small(const char *path, char **text, size_t *len)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	_cleanup_buf_ struct buf b = { 0 };
	char chunk[8192];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > DIGEST_CONFIG_MAX)
			return -EFBIG;
		int r = buf_append(&b, chunk, n);
		if (r < 0)
			return r;
	}
	*text = buf_steal(&b, len);
	return *text ? 0 : -ENOMEM;
}

/* A config file and, through its Include globs, everything it pulls in. */
/* NOLINTNEXTLINE(misc-no-recursion): depth <= DIGEST_INCLUDE_DEPTH */
static int digest_config(EVP_MD_CTX *md, const char *path, int depth)
{
	_cleanup_free_ char *text = NULL;
	_cleanup_strv_ struct strv pats = { 0 };
	size_t len;
	digest_stat(md, path);
	if (depth > DIGEST_INCLUDE_DEPTH)
		return -ELOOP;
	int r = read_small(path, &text, &len);
	if (r == -ENOENT)
		return 0;
	/* The analyzer takes read_small's -errno for a possible 0, len unset. */
	/* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage) */
	if (r < 0 || (r = sshdconf_includes(text, len, &pats)) < 0)
		return r;
	for (size_t i = 0; i < pats.n; i++) {
		char pattern[PATH_MAX];
		snprintf(pattern, sizeof(pattern), "%s%s", pats.v[i][0] == '/' ? "" : "/etc/ssh/", pats.v[i]);
		EVP_DigestUpdate(md, pattern, strlen(pattern) + 1);
		_cleanup_free_ char *dir = strdup(pattern);
		char *slash = dir ? strrchr(dir, '/') : NULL;
		if (slash && slash != dir) {
			*slash = '\0';
			digest_stat(md, dir);
		}
		glob_t g = { 0 };
		if (glob(pattern, 0, NULL, &g) == 0)
			for (size_t k = 0; r == 0 && k < g.gl_pathc; k++)
				r = digest_config(md, g.gl_pathv[k], depth + 1);
		globfree(&g);
		if (r < 0)
			return r;
	}
	return 0;
}

int sshd_inputs_digest(const struct config *cfg, const char *user, char digest[65])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char raw[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(md);
		return -ENOMEM;
	}
	EVP_DigestUpdate(md, user, strlen(user) + 1);
	EVP_DigestUpdate(md, cfg->address, strlen(cfg->address) + 1);
	digest_stat(md, cfg->sshd_binary);
	digest_stat(md, "/etc/passwd");
	digest_stat(md, "/etc/group");
	char main[PATH_MAX];
	bool vendor;
	int r = digest_config(md, sshd_main_config(cfg, main, sizeof(main), &vendor), 0);
	if (r == 0 && !EVP_DigestFinal_ex(md, raw, &n))
		r = -EIO;
	EVP_MD_CTX_free(md);
	for (unsigned i = 0; r == 0 && i < 32 && i < n; i++)
		snprintf(digest + (size_t)2 * i, 3, "%02x", raw[i]);
	return r;
}

char *sshd_expand_keys_path(const char *pattern, const char *home, const char *user, uid_t uid)
{
	_cleanup_buf_ struct buf b = { 0 };
	int r = 0;
	for (const char *p = pattern; r == 0 && *p; p++) {
		if (*p != '%') {
			r = buf_append(&b, p, 1);
			continue;
		}
		switch (*++p) {
		case 'h':
			r = buf_puts(&b, home);
			break;
		case 'u':
			r = buf_puts(&b, user);
			break;
		case 'U':
			r = buf_printf(&b, "%u", (unsigned)uid);
			break;
		case '%':
			r = buf_append(&b, "%", 1);
			break;
		default:
			return NULL;
		}
	}
	if (r < 0 || !b.data)
		return NULL;
	/* sshd takes a path that is relative after expansion from the home directory. */
	if (b.data[0] == '/')
		return buf_steal(&b, NULL);
	char *abs = NULL;
	if (asprintf(&abs, "%s/%s", home, b.data) < 0)
		return NULL;
	return abs;
}

pid_t sshd_running_pid(const struct sshd_settings *s)
{
	if (!s->pidfile || streq(s->pidfile, "none"))
		return 0;
	_cleanup_fclose_ FILE *f = fopen(s->pidfile, "re");
	char text[64];
	size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
	if (n == 0)
		return 0;
	text[n] = '\0';
	/* Leading white space, then the number; what follows it is ignored. */
	char *end;
	errno = 0;
	long pid = strtol(text, &end, 10);
	if (errno || end == text || pid <= 1 || pid > 4194304)
		return 0;
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
		return 0;
	return (pid_t)pid;
}
