/* journal.c: results by task_id, the lock, and backups that survive a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "journal.h"

static char root[] = "/run/kps-test-journal.XXXXXX";
static char state[600];

static int setup(void **s)
{
	(void)s;
	if (!mkdtemp(root))
		return -1;
	chmod(root, 0755);
	snprintf(state, sizeof(state), "%s/state/dir", root);
	return 0;
}

static int teardown(void **s)
{
	(void)s;
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_open_creates_private_dir(void **s)
{
	(void)s;
	struct journal j;
	char msg[256] = "";
	struct stat st;
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &j, msg, sizeof(msg)), 0);
	assert_int_equal(stat(state, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	journal_close(&j);
}

static void test_record_and_lookup(void **s)
{
	(void)s;
	struct journal j;
	char msg[256] = "";
	struct result res, got;
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &j, msg, sizeof(msg)), 0);
	result_init(&got);
	assert_int_equal(journal_lookup(&j, "task-1", &got), -ENOENT);
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "task-1");
	result_set_server_id(&res, "vm-1");
	result_fail(&res, ERR_PROBE_FAILED, "sshd still accepts the removed key");
	result_warn(&res, "a warning");
	assert_int_equal(journal_record(&j, &res), 0);
	assert_int_equal(journal_lookup(&j, "task-1", &got), 0);
	assert_string_equal(got.task_id, "task-1");
	assert_string_equal(got.server_id, "vm-1");
	assert_int_equal(got.code, ERR_PROBE_FAILED);
	assert_string_equal(got.msg, "sshd still accepts the removed key");
	assert_int_equal(got.warnings.n, 1);
	result_free(&res);
	result_free(&got);
	journal_close(&j);
}

static void record_ok(struct journal *j, const char *id)
{
	struct result res;
	result_init(&res);
	snprintf(res.task_id, sizeof(res.task_id), "%s", id);
	result_set_server_id(&res, "vm-1");
	assert_int_equal(journal_record(j, &res), 0);
	result_free(&res);
}

static bool recorded(struct journal *j, const char *id)
{
	struct result got;
	result_init(&got);
	int r = journal_lookup(j, id, &got);
	result_free(&got);
	return r == 0;
}

/* Every id the contract allows is a result and an outbox entry, "." and
 * ".." and ids that start with a dot or a dash among them. */
static void test_any_id_round_trips(void **s)
{
	(void)s;
	static const char *const ids[] = { ".", "..", "...", ".hidden", "-x", "_", "a.json", "A-z_0.9" };
	struct journal j;
	char msg[256] = "";
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &j, msg, sizeof(msg)), 0);
	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		struct result res;
		result_init(&res);
		snprintf(res.task_id, sizeof(res.task_id), "%s", ids[i]);
		assert_int_equal(journal_record(&j, &res), 0);
		assert_int_equal(journal_outbox_put(&j, &res), 0);
		result_free(&res);
		assert_true(recorded(&j, ids[i]));
	}
	_cleanup_strv_ struct strv listed = { 0 };
	assert_int_equal(journal_outbox_list(&j, &listed), 0);
	assert_int_equal(listed.n, ELEMENTSOF(ids));
	for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
		assert_string_equal(listed.v[i], ids[i]);	/* oldest first */
		assert_int_equal(journal_outbox_remove(&j, ids[i]), 0);
	}
	journal_close(&j);
}

/* Acknowledged results past results_keep go, oldest first, whatever their
 * ids; results still in the outbox stay. */
static void test_prune_keeps_newest(void **s)
{
	(void)s;
	struct journal j;
	char msg[256] = "";
	char id[32];
	assert_int_equal(journal_open(state, 3, &j, msg, sizeof(msg)), 0);
	struct result pending;
	result_init(&pending);
	snprintf(pending.task_id, sizeof(pending.task_id), "pending");
	assert_int_equal(journal_record(&j, &pending), 0);
	assert_int_equal(journal_outbox_put(&j, &pending), 0);
	for (int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "%c-%d", "a.-_Zz0"[i % 7], i);
		record_ok(&j, id);
	}
	for (int i = 0; i < 40; i++) {
		snprintf(id, sizeof(id), "%c-%d", "a.-_Zz0"[i % 7], i);
		assert_int_equal(recorded(&j, id), i >= 37);
	}
	assert_true(recorded(&j, "pending"));
	assert_int_equal(journal_outbox_remove(&j, "pending"), 0);
	assert_false(recorded(&j, "pending"));	/* acknowledged and oldest */
	result_free(&pending);
	journal_close(&j);
}

static void test_lock_serialises(void **s)
{
	(void)s;
	struct journal a, b;
	char msg[256] = "";
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &a, msg, sizeof(msg)), 0);
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &b, msg, sizeof(msg)), 0);
	assert_int_equal(journal_lock(&a, 1000), 0);
	assert_int_equal(journal_lock(&b, 50), -ETIMEDOUT);
	journal_close(&a);
	assert_int_equal(journal_lock(&b, 1000), 0);
	journal_close(&b);
}

static void test_backup_round_trip(void **s)
{
	(void)s;
	struct journal j;
	char msg[256] = "";
	struct backup b = { 0 }, got;
	assert_int_equal(journal_open(state, JOURNAL_KEEP_DEFAULT, &j, msg, sizeof(msg)), 0);
	assert_int_equal(journal_backup_read(&j, &got), -ENOENT);
	snprintf(b.task_id, sizeof(b.task_id), "task-9");
	b.server_id = strdup("vm-9");
	struct backup_file f1 = { .path = strdup("/home/u/.ssh/authorized_keys"), .walk_uid = 1000, .walk_gid = 1000,
				  .home = strdup("/home/u"), .existed = true, .uid = 1000, .gid = 1000,
				  .mode = 0600, .data = malloc(14), .len = 14, .ours = strdup("line\nkey\n"),
				  .ours_len = 9 };
	memcpy(f1.data, "line\0with nul\n", 14);
	struct backup_file f2 = { .path = strdup("/etc/ssh/sshd_config"), .home = strdup(""), .existed = false,
				  .data = strdup(""), .len = 0, .dir_created = true, .sshd_config = true };
	assert_int_equal(backup_add(&b, &f1), 0);
	assert_int_equal(backup_add(&b, &f2), 0);
	assert_int_equal(journal_backup_write(&j, &b), 0);
	assert_int_equal(journal_backup_read(&j, &got), 0);
	assert_string_equal(got.task_id, "task-9");
	assert_string_equal(got.server_id, "vm-9");
	assert_int_equal(got.n, 2);
	assert_string_equal(got.files[0].path, "/home/u/.ssh/authorized_keys");
	assert_int_equal(got.files[0].len, 14);
	assert_memory_equal(got.files[0].data, "line\0with nul\n", 14);
	assert_int_equal(got.files[0].ours_len, 9);
	assert_memory_equal(got.files[0].ours, "line\nkey\n", 9);
	assert_int_equal(got.files[1].ours_len, 0);
	assert_int_equal(got.files[1].len, 0);
	assert_int_equal(got.files[0].mode, 0600);
	assert_int_equal(got.files[0].walk_uid, 1000);
	assert_true(got.files[0].existed);
	assert_false(got.files[1].existed);
	assert_true(got.files[1].dir_created);
	assert_true(got.files[1].sshd_config);
	backup_free(&got);
	assert_int_equal(journal_backup_clear(&j), 0);
	assert_int_equal(journal_backup_read(&j, &got), -ENOENT);
	backup_free(&b);
	journal_close(&j);
}

int main(void)
{
	if (geteuid() != 0) {
		printf("skipping: needs root for a state dir under /run\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_creates_private_dir),
		cmocka_unit_test(test_record_and_lookup),
		cmocka_unit_test(test_any_id_round_trips),
		cmocka_unit_test(test_prune_keeps_newest),
		cmocka_unit_test(test_lock_serialises),
		cmocka_unit_test(test_backup_round_trip),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
