/* safefile.c against real directories: links, owners, modes, creation and
 * atomic replacement. Runs as root (it chowns); skips otherwise. */
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "safefile.h"

#define USER_UID 65534
#define USER_GID 65534

static char root[] = "/run/kps-test-safefile.XXXXXX";
static char home[512];

static void path_of(char *out, size_t size, const char *rel)
{
	snprintf(out, size, "%s/%s", root, rel);
}

static void make_dir(const char *rel, mode_t mode, uid_t uid)
{
	char p[512];
	path_of(p, sizeof(p), rel);
	assert_int_equal(mkdir(p, mode), 0);
	assert_int_equal(chmod(p, mode), 0);
	assert_int_equal(chown(p, uid, uid ? USER_GID : 0), 0);
}

static void make_file(const char *rel, const char *text, mode_t mode, uid_t uid)
{
	char p[512];
	path_of(p, sizeof(p), rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	assert_int_equal(fchown(fd, uid, uid ? USER_GID : 0), 0);
	close(fd);
}

static int open_rel(const char *rel, bool create, struct safefile_dir *d, char *msg)
{
	char p[512];
	path_of(p, sizeof(p), rel);
	return safefile_open_dir(p, USER_UID, USER_GID, home, create, d, msg, 256);
}

static int setup(void **state)
{
	(void)state;
	if (geteuid() != 0)
		return 0;
	if (!mkdtemp(root))
		return -1;
	chmod(root, 0755);
	snprintf(home, sizeof(home), "%s/home", root);
	make_dir("home", 0750, USER_UID);
	make_dir("home/.ssh", 0700, USER_UID);
	make_file("home/.ssh/authorized_keys", "ssh-ed25519 AAAA admin\n", 0600, USER_UID);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return geteuid() == 0 && system(cmd) != 0 ? -1 : 0;
}

#define REQUIRE_ROOT()                                  \
	do {                                            \
		if (geteuid() != 0)                     \
			skip();                         \
	} while (0)

static void test_walk_and_read(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	struct safefile_dir d;
	struct safefile_stat st;
	char msg[256], *text;
	size_t len;
	assert_int_equal(open_rel("home/.ssh", false, &d, msg), 0);
	assert_true(d.as_user);
	assert_int_equal(safefile_read(&d, "authorized_keys", 4096, &text, &len, &st, msg, sizeof(msg)), 0);
	assert_true(st.exists);
	assert_string_equal(text, "ssh-ed25519 AAAA admin\n");
	free(text);
	assert_int_equal(safefile_read(&d, "absent", 4096, &text, &len, &st, msg, sizeof(msg)), 0);
	assert_false(st.exists);
	assert_int_equal(len, 0);
	free(text);
	assert_int_equal(safefile_read(&d, "authorized_keys", 4, &text, &len, &st, msg, sizeof(msg)), -EFBIG);
	safefile_close_dir(&d);
}

/* As the user, root's supplementary groups are gone: a root:G 0640 file in
 * the user's directory is one the user cannot read, and neither can the
 * agent, whatever groups root has. */
static void test_no_root_groups(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	gid_t saved[64];
	int n = getgroups(64, saved);
	assert_true(n >= 0);
	gid_t mine[] = { 4242 };
	assert_int_equal(setgroups(1, mine), 0);
	char p[512], msg[256], *text = NULL;
	size_t len;
	struct safefile_dir d;
	struct safefile_stat st;
	path_of(p, sizeof(p), "home/.ssh/grouponly");
	make_file("home/.ssh/grouponly", "root's line\n", 0640, 0);
	assert_int_equal(chown(p, 0, 4242), 0);
	assert_int_equal(open_rel("home/.ssh", false, &d, msg), 0);
	assert_int_equal(safefile_read(&d, "grouponly", 4096, &text, &len, &st, msg, sizeof(msg)), -EACCES);
	assert_null(text);
	safefile_close_dir(&d);
	gid_t after[64];
	assert_int_equal(getgroups(64, after), 1);	/* root's groups are back */
	assert_int_equal(after[0], 4242);
	unlink(p);
	assert_int_equal(setgroups((size_t)n, saved), 0);
}

static void test_links_refused(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	char p[512], q[512], msg[256], *text;
	size_t len;
	struct safefile_dir d;
	struct safefile_stat st;

	/* A symlinked file in the user's directory. */
	path_of(p, sizeof(p), "home/.ssh/linked");
	assert_int_equal(symlink("/etc/passwd", p), 0);
	assert_int_equal(open_rel("home/.ssh", false, &d, msg), 0);
	assert_int_equal(safefile_read(&d, "linked", 4096, &text, &len, &st, msg, sizeof(msg)), -ELOOP);
	/* A second hard link. */
	path_of(q, sizeof(q), "home/.ssh/authorized_keys");
	path_of(p, sizeof(p), "home/hardlink");
	assert_int_equal(link(q, p), 0);
	assert_int_equal(safefile_read(&d, "authorized_keys", 4096, &text, &len, &st, msg, sizeof(msg)), -EMLINK);
	assert_int_equal(unlink(p), 0);
	/* A FIFO does not block and is refused. */
	path_of(p, sizeof(p), "home/.ssh/fifo");
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(chown(p, USER_UID, USER_GID), 0);
	assert_int_equal(safefile_read(&d, "fifo", 4096, &text, &len, &st, msg, sizeof(msg)), -EINVAL);
	safefile_close_dir(&d);

	/* A symlinked directory below the user's home. */
	make_dir("elsewhere", 0700, USER_UID);
	path_of(p, sizeof(p), "home/sshlink");
	path_of(q, sizeof(q), "elsewhere");
	assert_int_equal(symlink(q, p), 0);
	assert_int_equal(lchown(p, USER_UID, USER_GID), 0);
	assert_true(safefile_error_is_unsafe(open_rel("home/sshlink", false, &d, msg)));
	assert_non_null(strstr(msg, "symlink"));
	safefile_close_dir(&d);

	/* Root's own link above the user's part is followed. */
	path_of(p, sizeof(p), "rootlink");
	assert_int_equal(symlink("home", p), 0);
	assert_int_equal(open_rel("rootlink/.ssh", false, &d, msg), 0);
	safefile_close_dir(&d);
	/* A link owned by the user in root's part is not. */
	path_of(p, sizeof(p), "userlink");
	assert_int_equal(symlink("home", p), 0);
	assert_int_equal(lchown(p, USER_UID, USER_GID), 0);
	assert_int_equal(open_rel("userlink/.ssh", false, &d, msg), -ELOOP);
	safefile_close_dir(&d);
}

static void test_owner_and_mode(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	char msg[256], *text;
	size_t len;
	struct safefile_dir d;
	struct safefile_stat st;
	make_dir("loose", 0777, USER_UID);
	assert_int_equal(open_rel("loose", false, &d, msg), -EPERM);
	assert_non_null(strstr(msg, "writable"));
	safefile_close_dir(&d);
	make_dir("foreign", 0755, 1234);
	assert_int_equal(open_rel("foreign", false, &d, msg), -EPERM);
	assert_non_null(strstr(msg, "owned by uid 1234"));
	safefile_close_dir(&d);
	make_file("home/.ssh/wide", "x\n", 0666, USER_UID);
	make_file("home/.ssh/theirs", "x\n", 0600, 4321);
	assert_int_equal(open_rel("home/.ssh", false, &d, msg), 0);
	assert_int_equal(safefile_read(&d, "wide", 4096, &text, &len, &st, msg, sizeof(msg)), -EPERM);
	assert_int_equal(safefile_read(&d, "theirs", 4096, &text, &len, &st, msg, sizeof(msg)), -EPERM);
	safefile_close_dir(&d);
	assert_int_equal(open_rel("home/../home/.ssh", false, &d, msg), -EINVAL);
	safefile_close_dir(&d);
}

static void test_create_dir(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	char msg[256], p[512];
	struct safefile_dir d;
	struct stat st;
	assert_int_equal(open_rel("home/newdir", false, &d, msg), -ENOENT);
	assert_true(d.missing);
	safefile_close_dir(&d);
	assert_int_equal(open_rel("home/newdir", true, &d, msg), 0);
	assert_true(d.created);
	path_of(p, sizeof(p), "home/newdir");
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_uid, USER_UID);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(safefile_remove_dir(&d), 0);
	safefile_close_dir(&d);
	assert_int_equal(stat(p, &st), -1);
	/* Outside home and root-owned: never created. */
	assert_int_equal(open_rel("nohome", true, &d, msg), -ENOENT);
	assert_false(d.missing);
	safefile_close_dir(&d);
}

static void test_replace(void **state)
{
	(void)state;
	REQUIRE_ROOT();
	char msg[256], *text, p[512];
	size_t len;
	struct safefile_dir d;
	struct safefile_stat st, now;
	struct stat raw;
	assert_int_equal(open_rel("home/.ssh", false, &d, msg), 0);
	assert_int_equal(safefile_read(&d, "authorized_keys", 4096, &text, &len, &st, msg, sizeof(msg)), 0);
	free(text);
	assert_int_equal(safefile_replace(&d, "authorized_keys", "new\n", 4, USER_UID, USER_GID, 0600, &st, NULL), 0);
	path_of(p, sizeof(p), "home/.ssh/authorized_keys");
	assert_int_equal(stat(p, &raw), 0);
	assert_int_equal(raw.st_uid, USER_UID);
	assert_int_equal(raw.st_mode & 07777, 0600);
	assert_int_equal(raw.st_size, 4);
	/* The file changed since it was read: nothing is written. */
	assert_int_equal(safefile_replace(&d, "authorized_keys", "lost\n", 5, USER_UID, USER_GID, 0600, &st, NULL), -EAGAIN);
	assert_int_equal(safefile_read(&d, "authorized_keys", 4096, &text, &len, &now, msg, sizeof(msg)), 0);
	assert_string_equal(text, "new\n");
	free(text);
	/* Expected absent, now present. */
	struct safefile_stat absent = { .exists = false };
	assert_int_equal(safefile_replace(&d, "authorized_keys", "x", 1, USER_UID, USER_GID, 0600, &absent, NULL), -EAGAIN);
	/* No temp files are left behind. */
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s/home/.ssh | grep kps-)\"", root);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(safefile_remove(&d, "authorized_keys"), 0);
	assert_int_equal(safefile_remove(&d, "authorized_keys"), 0);
	safefile_close_dir(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_and_read), cmocka_unit_test(test_no_root_groups), cmocka_unit_test(test_links_refused),
		cmocka_unit_test(test_owner_and_mode), cmocka_unit_test(test_create_dir),
		cmocka_unit_test(test_replace),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
