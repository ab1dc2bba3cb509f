/* libselinux for file contexts, libsepol for the loaded policy's port
 * records. Built without them (meson -Dselinux=disabled) SELinux is off. */
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "safefile.h"
#include "selinux.h"

#ifdef HAVE_SELINUX
#include <selinux/label.h>
#include <selinux/selinux.h>
#include <sepol/sepol.h>
#endif

#define SELINUX_POLICY "/sys/fs/selinux/policy"
#define SELINUX_POLICY_MAX ((size_t)256 * 1024 * 1024)

const char *selinux_port_pick(const struct selinux_port *v, size_t n, int port)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].low <= port && port <= v[i].high)
			return v[i].type;
	return NULL;
}

#ifdef HAVE_SELINUX

bool selinux_on(void)
{
	return is_selinux_enabled() > 0;
}

static struct selabel_handle *labels;

int selinux_create_as(const char *path, mode_t mode)
{
	if (!selinux_on())
		return 0;
	if (!labels)
		labels = selabel_open(SELABEL_CTX_FILE, NULL, 0);
	if (!labels)
		return -errno;
	char *con = NULL;
	if (selabel_lookup(labels, &con, path, (int)mode) < 0)
		return errno == ENOENT ? 0 : -errno;	/* no rule: the kernel's default */
	int r = setfscreatecon(con) < 0 ? -errno : 0;
	freecon(con);
	return r;
}

void selinux_create_done(void)
{
	if (selinux_on())
		setfscreatecon(NULL);
}

/* The directory's path is the kernel's, from /proc/self/fd: what the fd
 * names now, whatever path led to it. */
int selinux_create_at(int dirfd, const char *name, mode_t mode)
{
	if (!selinux_on())
		return 0;
	char link[64], dir[PATH_MAX], path[PATH_MAX];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	ssize_t n = readlink(link, dir, sizeof(dir) - 1);
	if (n < 0)
		return -errno;
	dir[n] = '\0';
	if (snprintf(path, sizeof(path), "%s/%s", streq(dir, "/") ? "" : dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return selinux_create_as(path, mode);
}

struct port_walk {
	int port;
	char *type;
	size_t size;
	bool found;
};

static int port_record(const sepol_port_t *p, void *arg)
{
	struct port_walk *w = arg;
	struct selinux_port rec = { sepol_port_get_low(p), sepol_port_get_high(p), NULL };
	if (sepol_port_get_proto(p) != SEPOL_PROTO_TCP || !selinux_port_pick(&rec, 1, w->port))
		return 0;
	const char *type = sepol_context_get_type(sepol_port_get_con(p));
	snprintf(w->type, w->size, "%s", type ? type : "");
	w->found = true;
	return 1;
}

static void quiet(void *arg, sepol_handle_t *h, const char *fmt, ...)
{
	(void)arg;
	(void)h;
	(void)fmt;
}

/* NOLINTNEXTLINE(readability-non-const-parameter): port_record writes it */
int selinux_port_type(int port, char *type, size_t size)
{
	if (!selinux_on())
		return -ENOENT;
	_cleanup_close_ int fd = open(SELINUX_POLICY, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return -errno;
	if ((size_t)st.st_size > SELINUX_POLICY_MAX)
		return -EFBIG;
	_cleanup_buf_ struct buf b = { 0 };
	int r = buf_reserve(&b, (size_t)st.st_size);
	while (r == 0 && b.len < (size_t)st.st_size) {
		ssize_t n = read(fd, b.data + b.len, (size_t)st.st_size - b.len);
		if (n < 0 && errno != EINTR)
			r = -errno;
		else if (n == 0)
			break;
		else if (n > 0)
			b.len += (size_t)n;
	}
	sepol_handle_t *h = r == 0 ? sepol_handle_create() : NULL;
	sepol_policydb_t *db = NULL;
	sepol_policy_file_t *pf = NULL;
	struct port_walk w = { .port = port, .type = type, .size = size };
	if (h) {
		sepol_msg_set_callback(h, quiet, NULL);
		if (sepol_policy_file_create(&pf) == 0 && sepol_policydb_create(&db) == 0) {
			sepol_policy_file_set_mem(pf, b.data, b.len);
			sepol_policy_file_set_handle(pf, h);
			r = sepol_policydb_read(db, pf) == 0 && sepol_port_iterate(h, db, port_record, &w) >= 0 ? 0 : -EBADMSG;
		}
	}
	if (db)
		sepol_policydb_free(db);
	if (pf)
		sepol_policy_file_free(pf);
	if (h)
		sepol_handle_destroy(h);
	if (r == 0 && !w.found)
		r = -ENOENT;
	return r;
}

#else

bool selinux_on(void)
{
	return false;
}

int selinux_create_as(const char *path, mode_t mode)
{
	(void)path;
	(void)mode;
	return 0;
}

void selinux_create_done(void)
{
}

int selinux_create_at(int dirfd, const char *name, mode_t mode)
{
	(void)dirfd;
	(void)name;
	(void)mode;
	return 0;
}

int selinux_port_type(int port, char *type, size_t size)
{
	(void)port;
	(void)type;
	(void)size;
	return -ENOENT;
}

#endif

const struct safefile_labeller selinux_labeller = { selinux_create_at, selinux_create_done };
