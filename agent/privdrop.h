/* The network side gives up what it may not keep before it reads a byte
 * from the network: it becomes [agent] unprivileged_user with no
 * supplementary groups and no capabilities, can open no file (every open
 * fails with ENOENT), can never gain privileges again (no_new_privs),
 * cannot be traced or dumped,
 * and is held to the system calls its loop makes (a seccomp filter: any
 * other ends the process, naming the call). */
#pragma once

/* user: the account to become (a missing one falls back to nobody, with a
 * warning). Run as root; a process that is not root only gets
 * no_new_privs and the filter. 0 or -errno. */
int privdrop_network_side(const char *user);

/* Only the filter: for tests that run it on a process of their own. */
int privdrop_seccomp(void);
