/* SELinux, where the kernel has it on (libselinux and libsepol at build
 * time, both optional): files the agent creates get the context
 * restorecon would give them, and a port change is checked against the
 * port's label before anything changes. Without SELinux, or built
 * without it, every call is a no-op that succeeds. */
#pragma once

#include <sys/types.h>

#include "util.h"

/* The port type sshd may bind under the reference policy. */
#define SELINUX_SSH_PORT_TYPE "ssh_port_t"

/* Is SELinux on in this kernel (and built in)? */
bool selinux_on(void);

/* The next file or directory this thread creates gets the default context
 * for path (as restorecon would set it). Call selinux_create_done() after
 * the create. -errno when the label cannot be looked up. */
int selinux_create_as(const char *path, mode_t mode);
void selinux_create_done(void);
/* The same for name in the directory dirfd. */
int selinux_create_at(int dirfd, const char *name, mode_t mode);
/* The two above for safefile_set_labeller. */
extern const struct safefile_labeller selinux_labeller;

/* The type of the first port record of a list that holds port (as the
 * kernel picks it), or NULL. Pure, for tests: records as low, high, type. */
struct selinux_port {
	int low, high;
	const char *type;
};
const char *selinux_port_pick(const struct selinux_port *v, size_t n, int port);

/* The loaded policy's label for TCP port: 0 and its type in type, -ENOENT
 * when SELinux is off or no record holds it (the kernel's default port
 * type applies), -errno when the policy cannot be read. */
int selinux_port_type(int port, char *type, size_t size);
