/* link.c: frames through a socketpair on a real libevent loop; a peer
 * that sends garbage, an unknown type, a frame over the limit, a frame cut
 * short or a descriptor where none belongs gets nothing past the check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/event.h>

#include "link.h"
#include "msgframe.h"
#include "util.h"

struct seen {
	struct event_base *base;
	int frames;
	enum msgframe_type last_type;
	char last[64];
	int fds;
	bool closed;
	int err;
};

static void on_frame(void *arg, const struct msgframe *f, const char *payload, int fd)
{
	struct seen *s = arg;
	s->frames++;
	s->last_type = f->type;
	snprintf(s->last, sizeof(s->last), "%.*s", (int)f->len, payload);
	if (fd >= 0) {
		s->fds++;
		close(fd);
	}
}

static void on_closed(void *arg, int err)
{
	struct seen *s = arg;
	s->closed = true;
	s->err = err;
	event_base_loopbreak(s->base);
}

/* Runs the loop until the link closes or nothing more comes. */
static void run(struct event_base *base)
{
	struct timeval tv = { 0, 200000 };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static struct link *pair(struct event_base *base, struct seen *s, int *peer, unsigned fd_types)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	*peer = sv[1];
	*s = (struct seen){ .base = base };
	unsigned types = 1U << MSGFRAME_NET_TASK | 1U << MSGFRAME_MON_DEVICE;
	struct link *l = link_new(base, sv[0], types, fd_types, 32, on_frame, on_closed, s);
	assert_non_null(l);
	return l;
}

static void put(int fd, const void *p, size_t n)
{
	assert_int_equal(write(fd, p, n), (ssize_t)n);
}

static void test_frames_in_pieces(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct seen s;
	int peer;
	struct link *l = pair(base, &s, &peer, 0);
	uint8_t hdr[MSGFRAME_HEADER];
	msgframe_header(hdr, MSGFRAME_NET_TASK, 5);
	put(peer, hdr, 3);
	run(base);
	assert_int_equal(s.frames, 0);
	put(peer, hdr + 3, sizeof(hdr) - 3);
	put(peer, "hel", 3);
	run(base);
	assert_int_equal(s.frames, 0);
	put(peer, "lo", 2);
	/* Two frames in one write. */
	uint8_t two[2 * MSGFRAME_HEADER + 2];
	msgframe_header(two, MSGFRAME_NET_TASK, 1);
	two[MSGFRAME_HEADER] = 'a';
	msgframe_header(two + MSGFRAME_HEADER + 1, MSGFRAME_NET_TASK, 1);
	two[2 * MSGFRAME_HEADER + 1] = 'b';
	put(peer, two, sizeof(two));
	run(base);
	assert_int_equal(s.frames, 3);
	assert_string_equal(s.last, "b");
	assert_false(s.closed);
	close(peer);
	run(base);
	assert_true(s.closed);
	assert_int_equal(s.err, 0);
	link_free(l);
	event_base_free(base);
}

static void refused(const void *bytes, size_t n, int want)
{
	struct event_base *base = event_base_new();
	struct seen s;
	int peer;
	struct link *l = pair(base, &s, &peer, 0);
	put(peer, bytes, n);
	run(base);
	assert_int_equal(s.frames, 0);
	assert_true(s.closed);
	assert_int_equal(s.err, want);
	close(peer);
	link_free(l);
	event_base_free(base);
}

static void test_hostile_headers(void **state)
{
	(void)state;
	uint8_t hdr[MSGFRAME_HEADER];
	refused("garbage!garbage!", 16, -EBADMSG);
	msgframe_header(hdr, MSGFRAME_MON_POST, 1);	/* a type this end does not take */
	refused(hdr, sizeof(hdr), -EBADMSG);
	msgframe_header(hdr, (enum msgframe_type)31, 1);
	refused(hdr, sizeof(hdr), -EBADMSG);
	msgframe_header(hdr, MSGFRAME_NET_TASK, 33);	/* over the limit */
	refused(hdr, sizeof(hdr), -EMSGSIZE);
	msgframe_header(hdr, MSGFRAME_NET_TASK, UINT32_MAX);
	refused(hdr, sizeof(hdr), -EMSGSIZE);
}

static void test_cut_short(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct seen s;
	int peer;
	struct link *l = pair(base, &s, &peer, 0);
	uint8_t hdr[MSGFRAME_HEADER];
	msgframe_header(hdr, MSGFRAME_NET_TASK, 10);
	put(peer, hdr, sizeof(hdr));
	put(peer, "12345", 5);
	close(peer);
	run(base);
	assert_int_equal(s.frames, 0);
	assert_true(s.closed);
	assert_int_equal(s.err, -ECONNRESET);
	link_free(l);
	event_base_free(base);
}

static void send_with_fd(int peer, enum msgframe_type type, int fd)
{
	uint8_t hdr[MSGFRAME_HEADER + 4] = { 0 };
	msgframe_header(hdr, type, 4);
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl = { 0 };
	struct iovec iov = { hdr, sizeof(hdr) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	assert_int_equal(sendmsg(peer, &m, 0), (ssize_t)sizeof(hdr));
}

/* A descriptor rides only with a type that may bring one; any other is
 * closed, never handed on. */
static void test_descriptors(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct seen s;
	int peer;
	struct link *l = pair(base, &s, &peer, 1U << MSGFRAME_MON_DEVICE);
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	send_with_fd(peer, MSGFRAME_NET_TASK, fd);
	run(base);
	assert_int_equal(s.frames, 1);
	assert_int_equal(s.fds, 0);
	send_with_fd(peer, MSGFRAME_MON_DEVICE, fd);
	run(base);
	assert_int_equal(s.frames, 2);
	assert_int_equal(s.fds, 1);
	close(fd);
	close(peer);
	link_free(l);
	event_base_free(base);
}

/* link_send: frames arrive whole and in order, a descriptor with one. */
static void test_send(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct seen s;
	int peer;
	struct link *l = pair(base, &s, &peer, 0);
	assert_int_equal(link_send(l, MSGFRAME_MON_RESULT, "ab", 2, "cd", 2, -1), 0);
	struct msgframe f;
	char *payload = NULL;
	assert_int_equal(msgframe_recv(peer, 1U << MSGFRAME_MON_RESULT, 16, &f, &payload), 0);
	assert_int_equal(f.len, 4);
	assert_string_equal(payload, "abcd");
	free(payload);
	assert_int_equal(link_pending(l), 0);
	close(peer);
	run(base);
	assert_int_equal(link_send(l, MSGFRAME_MON_RESULT, "x", 1, NULL, 0, -1), -EPIPE);
	link_free(l);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_in_pieces), cmocka_unit_test(test_hostile_headers),
		cmocka_unit_test(test_cut_short),	  cmocka_unit_test(test_descriptors),
		cmocka_unit_test(test_send),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
