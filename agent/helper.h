/* kps-agent's helper executables: kps-agent-net (the network side; its
 * twin kps-agent-net-tls for an https control plane) and
 * kps-agent-tool (the commands other than run, and the workers). They
 * live in KPS_LIBEXECDIR, or beside kps-agent itself (a build tree, a
 * relocated install) when a file of that name is there, owned like
 * kps-agent and writable by nobody else. */
#pragma once

#define HELPER_NET "kps-agent-net"
#define HELPER_NET_TLS "kps-agent-net-tls"
#define HELPER_TOOL "kps-agent-tool"

/* The helper, opened O_PATH | O_CLOEXEC for fexecve: the monitor opens
 * each once at start, so that a package upgrade never mixes versions.
 * -errno when found nowhere. */
int helper_open(const char *name);

/* A helper's start (the network side, a worker): only the monitor starts
 * one, with its socket on fd, and passes no argument but -v (debug
 * logging, set here). 0, or the exit code 2 for anyone else. */
int helper_role(int argc, char **argv, int fd);

/* Replaces this process with the helper, argv as given; returns -errno
 * only when it could not. */
int helper_exec(const char *name, char *const argv[]);
