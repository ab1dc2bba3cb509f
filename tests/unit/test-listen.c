/* listen.c: the kernel's TCP tables read, a trial bind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <cmocka.h>

#include "listen.h"

static const char TCP[] =
	"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
	"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 89991 1 0000000060758308 100 0 0 10 0\n"
	"   1: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65534        0 141545 1 00000000b24bc6ce 100 0 0 10 0\n"
	"   2: 0100007F:0016 0100007F:D3BD 01 00000000:00000000 00:00000000 00000000     0        0 151 1 0000000000000000 20 4 30 10 -1\n";

static void test_parse(void **s)
{
	(void)s;
	struct listeners l = { 0 };
	assert_int_equal(listen_parse(TCP, sizeof(TCP) - 1, false, &l), 0);
	assert_int_equal(l.n, 2);	/* the established connection is not a listener */
	assert_int_equal(l.v[0].port, 22);
	assert_int_equal(l.v[0].uid, 0);
	assert_int_equal(l.v[0].inode, 89991);
	assert_int_equal(l.v[1].port, 2222);
	assert_int_equal(l.v[1].uid, 65534);
	assert_true(listen_new_root(&l, NULL, 22));
	assert_false(listen_new_root(&l, NULL, 2222));	/* someone else's */
	assert_int_equal(listen_foreign(&l, 2222), 65534);
	assert_int_equal(listen_foreign(&l, 22), -1);
	struct listeners before = { 0 };
	assert_int_equal(listen_parse(TCP, sizeof(TCP) - 1, false, &before), 0);
	assert_false(listen_new_root(&l, &before, 22));	/* the same socket: no new sshd */
	listen_free(&l);
	listen_free(&before);
	static const char bad[] = "header\n   0: 0100007F:ZZZZ 00000000:0000 0A 0 0 0 0 0 1\n";
	assert_int_equal(listen_parse(bad, sizeof(bad) - 1, false, &l), -EBADMSG);
	listen_free(&l);
}

static void test_port_free(void **s)
{
	(void)s;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	int port = ntohs(a.sin_port);
	assert_int_equal(listen_port_free("127.0.0.1", port), -EADDRINUSE);
	assert_int_equal(listen_port_free("0.0.0.0", port), -EADDRINUSE);
	assert_int_equal(listen_port_free("not an address", port), -EINVAL);
	assert_true(listen_port_listed(port));
	close(fd);
	assert_false(listen_port_listed(port));
	assert_int_equal(listen_port_free("127.0.0.1", port), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_port_free),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
