/* The kernel's TCP tables and a trial bind. A table line reads
 *   sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
 * with the local port in hex after the colon and st 0A for LISTEN. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "listen.h"

#define TCP_LISTEN 0x0A
#define TABLE_MAX ((size_t)16 * 1024 * 1024)

static int push(struct listeners *out, const struct listener *l)
{
	struct listener *v = realloc(out->v, (out->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	v[out->n++] = *l;
	out->v = v;
	return 0;
}

#define FIELD_LOCAL 1
#define FIELD_STATE 3
#define FIELD_UID 7
#define FIELD_INODE 9
#define FIELDS 10

/* Splits a table line into its first FIELDS white-space separated fields. */
static int fields(char *line, char *f[FIELDS])
{
	char *save = NULL;
	size_t n = 0;
	for (char *t = strtok_r(line, " \t", &save); t && n < FIELDS; t = strtok_r(NULL, " \t", &save))
		f[n++] = t;
	return n == FIELDS ? 0 : -EBADMSG;
}

static int number(const char *s, int base, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, base);
	if (errno || end == s || *end || v > max)
		return -EBADMSG;
	*out = v;
	return 0;
}

static int parse_line(char *line, bool v6, struct listeners *out)
{
	char *f[FIELDS];
	unsigned long st, uid, inode, port;
	if (fields(line, f) < 0 || number(f[FIELD_STATE], 16, 0xff, &st) < 0 ||
	    number(f[FIELD_UID], 10, UINT32_MAX, &uid) < 0 || number(f[FIELD_INODE], 10, ULONG_MAX, &inode) < 0)
		return -EBADMSG;
	if (st != TCP_LISTEN)
		return 0;
	const char *colon = strrchr(f[FIELD_LOCAL], ':');
	if (!colon || number(colon + 1, 16, 65535, &port) < 0)
		return -EBADMSG;
	struct listener l = { .port = (int)port, .uid = (uid_t)uid, .inode = inode, .v6 = v6 };
	return push(out, &l);
}

int listen_parse(const char *text, size_t len, bool v6, struct listeners *out)
{
	bool header = true;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[512];
		if (n >= sizeof(line))
			return -EBADMSG;
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (nl ? 1 : 0);
		if (header || n == 0) {
			header = false;
			continue;
		}
		int r = parse_line(line, v6, out);
		if (r < 0)
			return r;
	}
	return 0;
}

static int read_table(const char *path, bool v6, struct listeners *out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;	/* no IPv6 in this kernel */
	_cleanup_buf_ struct buf b = { 0 };
	int r = buf_read_fd(&b, fd, TABLE_MAX);
	return r < 0 ? r : listen_parse(b.data, b.len, v6, out);
}

int listen_read(struct listeners *out)
{
	*out = (struct listeners){ 0 };
	int r = read_table("/proc/net/tcp", false, out);
	if (r == 0)
		r = read_table("/proc/net/tcp6", true, out);
	if (r < 0)
		listen_free(out);
	return r;
}

void listen_free(struct listeners *l)
{
	free(l->v);
	*l = (struct listeners){ 0 };
}

static bool had(const struct listeners *before, unsigned long inode)
{
	for (size_t i = 0; before && i < before->n; i++)
		if (before->v[i].inode == inode)
			return true;
	return false;
}

bool listen_new_root(const struct listeners *now, const struct listeners *before, int port)
{
	for (size_t i = 0; i < now->n; i++)
		if (now->v[i].port == port && now->v[i].uid == 0 && !had(before, now->v[i].inode))
			return true;
	return false;
}

long listen_foreign(const struct listeners *now, int port)
{
	for (size_t i = 0; i < now->n; i++)
		if (now->v[i].port == port && now->v[i].uid != 0)
			return (long)now->v[i].uid;
	return -1;
}

bool listen_port_listed(int port)
{
	struct listeners now;
	if (listen_read(&now) < 0)
		return false;
	bool found = false;
	for (size_t i = 0; i < now.n && !found; i++)
		found = now.v[i].port == port;
	listen_free(&now);
	return found;
}

static int trial_bind(const char *address, int port);

int listen_port_free(const char *address, int port)
{
	int r = trial_bind(address, port);
	/* The agent's sandbox may not bind a port below 1024 (no
	 * CAP_NET_BIND_SERVICE) where sshd may: the table says then. */
	if (r == -EACCES || r == -EPERM)
		return listen_port_listed(port) ? -EADDRINUSE : 0;
	return r;
}

static int trial_bind(const char *address, int port)
{
	char host[64];
	size_t n = strlen(address);
	/* "[::]" as sshd -T prints it, or a bare address. */
	if (address[0] == '[' && n >= 2 && address[n - 1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(n - 2), address + 1);
	else
		snprintf(host, sizeof(host), "%s", address);
	struct sockaddr_storage ss = { 0 };
	socklen_t sl;
	struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		sl = sizeof(*in4);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		sl = sizeof(*in6);
	} else {
		return -EINVAL;
	}
	_cleanup_close_ int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
		return -errno;
	/* A listener there with SO_REUSEADDR of its own lets bind() through;
	 * listen() is where the kernel says no. */
	if (listen(fd, 1) < 0)
		return -errno;
	return 0;
}
