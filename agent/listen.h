/* Who listens where: the kernel's TCP tables (/proc/net/tcp, tcp6), so that
 * a reload is known to have brought up a new sshd (new sockets, owned by
 * root) and a squatter on a port is told from sshd; and whether a port is
 * free on an address before sshd is told to take it. */
#pragma once

#include <sys/types.h>

#include "util.h"

struct listener {
	int port;
	uid_t uid;
	unsigned long inode;
	bool v6;
};

struct listeners {
	struct listener *v;
	size_t n;
};

/* Parses one /proc/net/tcp or tcp6 table and appends its listening sockets.
 * Pure. -EBADMSG on a line that is not of the table's shape. */
int listen_parse(const char *text, size_t len, bool v6, struct listeners *out);

/* Both tables of this network namespace. */
int listen_read(struct listeners *out);
void listen_free(struct listeners *l);

/* A socket listening on port owned by uid 0 and not among before (may be
 * NULL): the sshd that came up after a reload, or systemd's socket. */
bool listen_new_root(const struct listeners *now, const struct listeners *before, int port);

/* Anyone but root listening on port: the uid, or -1 for none. */
long listen_foreign(const struct listeners *now, int port);

/* Does anyone listen on port, on any address (the kernel's tables)? */
bool listen_port_listed(int port);

/* Can sshd bind address:port? address as sshd -T prints a ListenAddress
 * ("0.0.0.0", "[::]", "127.0.0.1"). Tried the way sshd binds: SO_REUSEADDR,
 * IPV6_V6ONLY. Where the agent itself may not bind the port (a port below
 * 1024 without CAP_NET_BIND_SERVICE in its sandbox), a listener on the port
 * in the kernel's tables counts as taken. 0 free, -EADDRINUSE taken, other
 * -errno. */
int listen_port_free(const char *address, int port);
