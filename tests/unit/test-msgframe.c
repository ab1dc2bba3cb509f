/* msgframe.c: the frames between the daemon and its workers. The header
 * checks on bytes in memory; msgframe_recv and msgframe_send over a real
 * socketpair, fed byte by byte (short reads), cut short, oversized and
 * garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "msgframe.h"
#include "util.h"

#define TYPES ((1U << MSGFRAME_TASK) | (1U << MSGFRAME_RECOVER))

static void test_header_roundtrip(void **s)
{
	(void)s;
	uint8_t hdr[MSGFRAME_HEADER];
	struct msgframe f;
	msgframe_header(hdr, MSGFRAME_RECOVER, 1234567);
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), TYPES, 1234567, &f), 0);
	assert_int_equal(f.type, MSGFRAME_RECOVER);
	assert_int_equal(f.len, 1234567);
	/* Short: every prefix of a header asks for more. */
	for (size_t n = 0; n < MSGFRAME_HEADER; n++)
		assert_int_equal(msgframe_peek(hdr, n, TYPES, 1234567, &f), -EAGAIN);
	/* One byte over the maximum. */
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), TYPES, 1234566, &f), -EMSGSIZE);
	msgframe_header(hdr, MSGFRAME_TASK, 0);
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), TYPES, 0, &f), 0);
	assert_int_equal(f.len, 0);
}

static void test_header_garbage(void **s)
{
	(void)s;
	uint8_t hdr[MSGFRAME_HEADER];
	struct msgframe f;
	/* A type this end does not take. */
	msgframe_header(hdr, MSGFRAME_RESULT, 4);
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), TYPES, 100, &f), -EBADMSG);
	/* Type 0, and types past the mask's width. */
	msgframe_header(hdr, (enum msgframe_type)0, 4);
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), ~0U, 100, &f), -EBADMSG);
	msgframe_header(hdr, (enum msgframe_type)40, 4);
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), ~0U, 100, &f), -EBADMSG);
	/* Not our magic: a JSON line, a header with one byte flipped. */
	assert_int_equal(msgframe_peek("{\"task_id\": 1}", 14, TYPES, 100, &f), -EBADMSG);
	msgframe_header(hdr, MSGFRAME_TASK, 4);
	hdr[1] ^= 0x01;
	assert_int_equal(msgframe_peek(hdr, sizeof(hdr), TYPES, 100, &f), -EBADMSG);
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_roundtrip(void **s)
{
	(void)s;
	int sv[2];
	struct msgframe f;
	char *p = NULL;
	pair(sv);
	assert_int_equal(msgframe_send(sv[0], MSGFRAME_TASK, "hello", 5), 0);
	assert_int_equal(msgframe_send(sv[0], MSGFRAME_RECOVER, "", 0), 0);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 100, &f, &p), 0);
	assert_int_equal(f.type, MSGFRAME_TASK);
	assert_int_equal(f.len, 5);
	assert_string_equal(p, "hello");
	free(p);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 100, &f, &p), 0);
	assert_int_equal(f.type, MSGFRAME_RECOVER);
	assert_int_equal(f.len, 0);
	assert_string_equal(p, "");
	free(p);
	/* The sender went away: EOF before a header is a broken frame. */
	close(sv[0]);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 100, &f, &p), -EBADMSG);
	assert_null(p);
	close(sv[1]);
}

/* A child writes bytes one write at a time: the reader sees short reads. */
static void dribble(int fd, const uint8_t *data, size_t n)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (size_t i = 0; i < n; i++) {
			if (write(fd, data + i, 1) != 1)
				_exit(1);
			usleep(200);
		}
		_exit(0);
	}
	close(fd);
}

static void reap(void)
{
	int st;
	while (wait(&st) < 0 && errno == EINTR)
		;
}

static void test_short_reads(void **s)
{
	(void)s;
	int sv[2];
	uint8_t buf[MSGFRAME_HEADER + 64];
	struct msgframe f;
	char *p = NULL;
	const char *text = "{\"task_id\": \"a\"}";
	size_t n = strlen(text);
	pair(sv);
	msgframe_header(buf, MSGFRAME_TASK, (uint32_t)n);
	memcpy(buf + MSGFRAME_HEADER, text, n);
	dribble(sv[0], buf, MSGFRAME_HEADER + n);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 100, &f, &p), 0);
	assert_int_equal(f.len, n);
	assert_memory_equal(p, text, n);
	free(p);
	close(sv[1]);
	reap();
}

static void test_truncated(void **s)
{
	(void)s;
	uint8_t buf[MSGFRAME_HEADER + 16];
	struct msgframe f;
	char *p = NULL;
	msgframe_header(buf, MSGFRAME_TASK, 16);
	memset(buf + MSGFRAME_HEADER, 'x', 16);
	/* Cut inside the header, and inside the payload. */
	const size_t cuts[] = { 3, MSGFRAME_HEADER, MSGFRAME_HEADER + 15 };
	for (size_t i = 0; i < ELEMENTSOF(cuts); i++) {
		int sv[2];
		pair(sv);
		dribble(sv[0], buf, cuts[i]);
		assert_int_equal(msgframe_recv(sv[1], TYPES, 100, &f, &p), -EBADMSG);
		assert_null(p);
		close(sv[1]);
		reap();
	}
}

static void test_oversized_and_garbage(void **s)
{
	(void)s;
	int sv[2];
	uint8_t hdr[MSGFRAME_HEADER];
	struct msgframe f;
	char *p = NULL;
	pair(sv);
	/* A header announcing 4 GiB: refused before any allocation or read. */
	msgframe_header(hdr, MSGFRAME_TASK, UINT32_MAX);
	assert_int_equal(write(sv[0], hdr, sizeof(hdr)), (ssize_t)sizeof(hdr));
	assert_int_equal(msgframe_recv(sv[1], TYPES, 1 << 20, &f, &p), -EMSGSIZE);
	assert_null(p);
	/* Garbage where a header belongs. */
	assert_int_equal(write(sv[0], "GARBAGE!", 8), 8);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 1 << 20, &f, &p), -EBADMSG);
	assert_null(p);
	/* A result frame where a task is expected. */
	assert_int_equal(msgframe_send(sv[0], MSGFRAME_RESULT, "{}", 2), 0);
	assert_int_equal(msgframe_recv(sv[1], TYPES, 1 << 20, &f, &p), -EBADMSG);
	assert_null(p);
	close(sv[0]);
	close(sv[1]);
}

/* A frame larger than the socket's buffer goes through whole. */
static void test_large(void **s)
{
	(void)s;
	int sv[2];
	struct msgframe f;
	char *p = NULL;
	size_t n = (size_t)3 * 1024 * 1024;
	char *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	pair(sv);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[1]);
		_exit(msgframe_send(sv[0], MSGFRAME_TASK, big, n) == 0 ? 0 : 1);
	}
	close(sv[0]);
	assert_int_equal(msgframe_recv(sv[1], TYPES, n, &f, &p), 0);
	assert_int_equal(f.len, n);
	assert_memory_equal(p, big, n);
	free(p);
	free(big);
	close(sv[1]);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_roundtrip), cmocka_unit_test(test_header_garbage),
		cmocka_unit_test(test_roundtrip),	 cmocka_unit_test(test_short_reads),
		cmocka_unit_test(test_truncated),	 cmocka_unit_test(test_oversized_and_garbage),
		cmocka_unit_test(test_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
