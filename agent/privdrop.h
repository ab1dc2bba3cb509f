/* The network side gives up what it may not keep before it reads a byte
 * from the network: it moves into an empty root, becomes [agent]
 * unprivileged_user with no supplementary groups and no capabilities, can
 * never gain privileges again (no_new_privs), cannot be traced or dumped,
 * and is held to the system calls its loop makes (a seccomp filter that
 * kills the process on any other). */
#pragma once

/* user: the account to become (a missing one falls back to nobody, with a
 * warning); empty_dir: the directory to make the root, created 0755 and
 * owned by root when missing, refused when it holds anything or others
 * may write to it. Run as root; a process that is not root only gets
 * no_new_privs and the filter. 0 or -errno. */
int privdrop_network_side(const char *user, const char *empty_dir);

/* Only the filter: for tests that run it on a process of their own. */
int privdrop_seccomp(void);
