/* hostile-agent: a hostile program in the network side's place (issue 13
 * §1), for tests/integration/hostile_check.py, which installs it as
 * kps-agent-net beside copies of the real kps-agent and kps-agent-tool, so
 * that the real monitor starts it (helper.h). KPS_HOSTILE names what it
 * sends (garbage, frames of a type or size the monitor may not take,
 * frames cut short, floods, forged acknowledgements, descriptors, a route
 * that does not exist, a closed socket, or one valid task).
 *
 * The hostile side acts only in the first network side the monitor starts
 * (a counter in KPS_HOSTILE_DIR); every later one is a well-behaved probe
 * that hands over KPS_HOSTILE_DIR/probe.json on the channel route and
 * writes the answer down: the monitor survived, started a new network side
 * and still serves it. Each generation writes what it saw to
 * KPS_HOSTILE_DIR/report-<gen>.txt, opened as root before it drops
 * privileges exactly as the real network side does (privdrop.c). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "helper.h"
#include "log.h"
#include "msgframe.h"
#include "netside.h"
#include "privdrop.h"
#include "task.h"
#include "version.h"
#include "worker.h"

#define LINK NETSIDE_LINK_FD
#define MON_TYPES (1U << MSGFRAME_MON_RESULT | 1U << MSGFRAME_MON_POST | 1U << MSGFRAME_MON_DEVICE)

static FILE *report;
static char probe[TASK_MAX_BYTES + 1];
static size_t probe_len;
static char valid[TASK_MAX_BYTES + 1];	/* KPS_HOSTILE_DIR/valid.json */
static size_t valid_len;
static pid_t monitor_pid;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(report, fmt, ap);
	va_end(ap);
	fputc('\n', report);
	fflush(report);
}

static int64_t ms_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void put_raw(const void *p, size_t n)
{
	for (size_t off = 0; off < n;) {
		ssize_t w = write(LINK, (const char *)p + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			say("write: %s", strerror(errno));
			return;
		}
		off += (size_t)w;
	}
}

static void put_header(enum msgframe_type type, uint32_t len)
{
	uint8_t hdr[MSGFRAME_HEADER];
	msgframe_header(hdr, type, len);
	put_raw(hdr, sizeof(hdr));
}

static void send_task(uint32_t route, uint32_t tag, const char *text, size_t len)
{
	uint8_t head[8];
	msgframe_put32(head, route);
	msgframe_put32(head + 4, tag);
	put_header(MSGFRAME_NET_TASK, (uint32_t)(sizeof(head) + len));
	put_raw(head, sizeof(head));
	put_raw(text, len);
}

/* One frame from the monitor, descriptors that came with it closed and
 * counted. 0, or -ETIMEDOUT / -EPIPE (the link ended) / -EBADMSG. */
static int get_frame(int timeout_ms, struct msgframe *f, char **payload, int *n_fds)
{
	uint8_t hdr[MSGFRAME_HEADER];
	size_t got = 0;
	*payload = NULL;
	while (got < sizeof(hdr)) {
		struct pollfd p = { .fd = LINK, .events = POLLIN };
		int r = poll(&p, 1, timeout_ms);
		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 8)];
		} ctl;
		struct iovec iov = { hdr + got, sizeof(hdr) - got };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf) };
		ssize_t n = recvmsg(LINK, &m, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return -EPIPE;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
			for (size_t i = 0; c->cmsg_type == SCM_RIGHTS && i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				close(fd);
				(*n_fds)++;
			}
		got += (size_t)n;
	}
	int r = msgframe_peek(hdr, sizeof(hdr), MON_TYPES, 1U << 20, f);
	if (r < 0)
		return r;
	char *p = malloc(f->len + 1);
	if (!p)
		return -ENOMEM;
	for (size_t off = 0; off < f->len;) {
		ssize_t n = read(LINK, p + off, f->len - off);
		if (n <= 0) {
			free(p);
			return -EPIPE;
		}
		off += (size_t)n;
	}
	p[f->len] = '\0';
	*payload = p;
	return 0;
}

/* Writes down every frame the monitor sends until the link ends, or for
 * want answers to channel tasks (0: until the end), or timeout_ms. */
static int drain(int want, int timeout_ms)
{
	int results = 0, fds = 0;
	int64_t end = ms_now() + timeout_ms;
	for (;;) {
		struct msgframe f;
		char *payload;
		int64_t left = end - ms_now();
		int r = left > 0 ? get_frame((int)left, &f, &payload, &fds) : -ETIMEDOUT;
		if (r < 0) {
			say("end %s results %d fds %d", r == -EPIPE ? "eof" : strerror(-r), results, fds);
			return results;
		}
		if (f.type == MSGFRAME_MON_RESULT && f.len >= 4) {
			say("result %u %s", msgframe_get32(payload), payload + 4);
			results++;
		} else if (f.type == MSGFRAME_MON_POST) {
			say("post %s", payload);
		} else if (f.type == MSGFRAME_MON_DEVICE && f.len >= 4) {
			say("device %u", msgframe_get32(payload));
		}
		free(payload);
		if (want && results >= want) {
			say("end answered results %d fds %d", results, fds);
			return results;
		}
	}
}

static void flood_tasks(unsigned n)
{
	static const char *const bad[] = {
		"", "{", "[]", "null", "{\"task_id\":\"x\"}", "{\"action\":\"associate\"}",
		"{\"task_id\":\"../../etc/passwd\",\"action\":\"associate\",\"server\":{\"id\":\"x\"}}",
		"{\"task_id\":\"f1\",\"action\":\"format-disk\",\"server\":{\"id\":\"x\"}}",
		"\xff\xfe\x00garbage",
	};
	for (unsigned i = 0; i < n; i++) {
		const char *t = bad[i % (sizeof(bad) / sizeof(bad[0]))];
		send_task(MSGFRAME_ROUTE_CHANNEL, i + 1, t, strlen(t) + (i % 9 == 8 ? 3 : 0));
	}
	say("sent tasks %u", n);
	drain((int)n, 120000);
}

static void forged_acks(void)
{
	/* What the monitor hands over comes first: the outbox, up to 16. */
	struct msgframe f;
	char *payload;
	int fds = 0;
	char first[TASK_ID_MAX + 1] = "";
	while (get_frame(1500, &f, &payload, &fds) == 0) {
		if (f.type == MSGFRAME_MON_POST) {
			say("post %s", payload);
			if (!first[0])
				snprintf(first, sizeof(first), "%s", payload);
		}
		free(payload);
	}
	static const char *const ids[] = { "never-given", "out-17", "../results/out-01", "out-01/../out-02",
					   "", "out-01\n", "OUT-01" };
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		msgframe_send(LINK, MSGFRAME_NET_POSTED, ids[i], strlen(ids[i]));
	/* The id with a NUL after it, and one over TASK_ID_MAX. */
	msgframe_send(LINK, MSGFRAME_NET_POSTED, "out-01\0x", 8);
	char longid[300];
	memset(longid, 'a', sizeof(longid));
	msgframe_send(LINK, MSGFRAME_NET_POSTED, longid, sizeof(longid));
	say("forged %zu", sizeof(ids) / sizeof(ids[0]) + 2);
	/* One acknowledgement it may send: the first result handed over. */
	if (first[0]) {
		msgframe_send(LINK, MSGFRAME_NET_POSTED, first, strlen(first));
		say("acked %s", first);
	}
	drain(0, 3000);
}

static void device_flood(void)
{
	int64_t start = ms_now();
	unsigned sent = 0;
	while (ms_now() - start < 2000) {
		msgframe_send(LINK, MSGFRAME_NET_DEVICE, NULL, 0);
		sent++;
		usleep(5000);
	}
	say("sent device %u in %lld ms", sent, (long long)(ms_now() - start));
	int answers = 0, fds = 0;
	struct msgframe f;
	char *payload;
	while (answers < (int)sent && get_frame(5000, &f, &payload, &fds) == 0) {
		if (f.type == MSGFRAME_MON_DEVICE)
			answers++;
		free(payload);
	}
	say("device answers %d fds %d", answers, fds);
	drain(0, 1000);
}

/* Descriptors on every kind of frame, as many as one message takes. */
static void pass_fds(const int *fds, size_t n)
{
	static const enum msgframe_type types[] = { MSGFRAME_NET_SETTLED, MSGFRAME_NET_DEVICE, MSGFRAME_NET_POSTED,
						    MSGFRAME_NET_TASK };
	for (unsigned round = 0; round < 200; round++) {
		uint8_t frame[MSGFRAME_HEADER + 8 + 2];
		enum msgframe_type type = types[round % 4];
		size_t len = type == MSGFRAME_NET_TASK ? 10 : type == MSGFRAME_NET_POSTED ? 2 : 0;
		msgframe_header(frame, type, (uint32_t)len);
		msgframe_put32(frame + MSGFRAME_HEADER, MSGFRAME_ROUTE_CHANNEL);
		msgframe_put32(frame + MSGFRAME_HEADER + 4, round);
		memcpy(frame + MSGFRAME_HEADER + (type == MSGFRAME_NET_TASK ? 8 : 0), "{}", 2);
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * 16)];
		} ctl;
		memset(&ctl, 0, sizeof(ctl));
		struct iovec iov = { frame, MSGFRAME_HEADER + len };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				    .msg_controllen = CMSG_SPACE(sizeof(int) * n) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
		if (sendmsg(LINK, &m, MSG_NOSIGNAL) < 0)
			say("sendmsg: %s", strerror(errno));
	}
	say("passed fds 200 frames");
	drain(50, 60000);
}

static void act(const char *mode, const int *fds, size_t n_fds)
{
	say("mode %s", mode);
	if (streq(mode, "garbage")) {
		uint8_t junk[4096];
		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = (uint8_t)(i * 131 + 7);
		put_raw(junk, sizeof(junk));
	} else if (streq(mode, "unknown-type")) {
		put_header((enum msgframe_type)7, 0);
	} else if (streq(mode, "monitor-type")) {
		put_header(MSGFRAME_MON_RESULT, 4);	/* a type only the monitor sends */
		put_raw("\0\0\0\0", 4);
	} else if (streq(mode, "worker-type")) {
		put_header(MSGFRAME_RESULT, 2);		/* a worker's result, on the wrong link */
		put_raw("{}", 2);
	} else if (streq(mode, "huge")) {
		put_header(MSGFRAME_NET_TASK, UINT32_MAX);
		put_raw(valid, valid_len);
	} else if (streq(mode, "oversize")) {
		size_t n = TASK_MAX_BYTES + 8 + 1;
		char *big = calloc(1, n);
		if (big) {
			memset(big, ' ', n);
			memcpy(big + 8, valid, valid_len);
			msgframe_put32(big, MSGFRAME_ROUTE_CHANNEL);
			msgframe_send(LINK, MSGFRAME_NET_TASK, big, n);
			free(big);
		}
	} else if (streq(mode, "cut")) {
		/* A valid task whose frame ends early: nothing of it may run. */
		uint8_t head[8];
		msgframe_put32(head, MSGFRAME_ROUTE_CHANNEL);
		msgframe_put32(head + 4, 1);
		put_header(MSGFRAME_NET_TASK, (uint32_t)(sizeof(head) + valid_len));
		put_raw(head, sizeof(head));
		put_raw(valid, valid_len - 1);
		say("cut after %zu of %zu bytes", valid_len - 1, valid_len);
		_exit(0);
	} else if (streq(mode, "close")) {
		say("closed");
		close(LINK);
		pause();	/* still running: the monitor must not wait on it */
	} else if (streq(mode, "close-exit")) {
		say("closed");
		_exit(0);
	} else if (streq(mode, "short-task")) {
		put_header(MSGFRAME_NET_TASK, 5);
		put_raw("\1\0\0\0\0", 5);
		drain(0, 2000);
		return;
	} else if (streq(mode, "flood-tasks")) {
		flood_tasks(1200);
		return;
	} else if (streq(mode, "forged-acks")) {
		forged_acks();
		return;
	} else if (streq(mode, "device-flood")) {
		device_flood();
		return;
	} else if (streq(mode, "pass-fds")) {
		pass_fds(fds, n_fds);
		return;
	} else if (streq(mode, "bad-routes")) {
		send_task(99, 1, valid, valid_len);
		send_task(0, 2, valid, valid_len);
		send_task(UINT32_MAX, 3, valid, valid_len);
		say("sent routes 99 0 4294967295");
		drain(0, 4000);
		return;
	} else if (streq(mode, "escape")) {
		/* Past the socket: the files (the filter finds none), then the
		 * monitor itself (kill(2) is outside the filter: the process
		 * ends there, as at any call outside it: setuid, ptrace, ...). */
		const char *keys = getenv("KPS_HOSTILE_KEYS");
		int fd = keys ? open(keys, O_WRONLY | O_APPEND) : -1;
		say("open keys %d %s", fd, fd < 0 ? strerror(errno) : "opened");
		say("kill next");
		int r = kill(monitor_pid, SIGKILL);
		say("kill monitor %d %s", r, strerror(errno));
		_exit(0);
	} else if (streq(mode, "valid")) {
		send_task(MSGFRAME_ROUTE_CHANNEL, 42, valid, valid_len);
		drain(1, 120000);
		return;
	} else if (streq(mode, "valid-cp")) {
		/* Twice on the control plane's route: one run, one result. */
		send_task(MSGFRAME_ROUTE_CONTROL_PLANE, 0, valid, valid_len);
		send_task(MSGFRAME_ROUTE_CONTROL_PLANE, 0, valid, valid_len);
		drain(0, 20000);
		return;
	} else {
		say("unknown mode");
		_exit(3);
	}
	drain(0, 5000);
}

/* The generation of this network side, counted in KPS_HOSTILE_DIR/gen. */
static unsigned next_gen(const char *dir)
{
	char path[4096], buf[16] = "";
	snprintf(path, sizeof(path), "%s/gen", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return 1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	unsigned gen = (n > 0 ? (unsigned)atoi(buf) : 0) + 1;
	int len = snprintf(buf, sizeof(buf), "%u\n", gen);
	(void)!pwrite(fd, buf, (size_t)len, 0);
	close(fd);
	return gen;
}

static size_t slurp(const char *dir, const char *name, char *out, size_t size)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, out, size - 1);
	close(fd);
	return n > 0 ? (size_t)n : 0;
}

static int hostile_main(void)
{
	const char *dir = getenv("KPS_HOSTILE_DIR");
	const char *mode = getenv("KPS_HOSTILE");
	struct config cfg;
	if (!dir || !mode)
		return 2;
	signal(SIGPIPE, SIG_IGN);	/* a link the monitor ended is written down, not died of */
	/* The monitor's configuration comes first, as to a real network side. */
	if (worker_config(3, &cfg) < 0)
		return 2;
	unsigned gen = next_gen(dir);
	char path[4096];
	snprintf(path, sizeof(path), "%s/report-%u.txt", dir, gen);
	report = fopen(path, "we");
	if (!report)
		return 2;
	probe_len = slurp(dir, "probe.json", probe, sizeof(probe));
	valid_len = slurp(dir, "valid.json", valid, sizeof(valid));
	/* Descriptors to pass, opened while it still may. */
	int fds[16];
	for (size_t i = 0; i < 16; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	monitor_pid = getppid();
	int r = privdrop_network_side(cfg.unprivileged_user);
	say("gen %u uid %u privdrop %d", gen, (unsigned)getuid(), r);
	config_free(&cfg);
	if (r < 0)
		return 2;
	if (gen == 1) {
		act(mode, fds, 16);
	} else {
		say("mode probe");
		send_task(MSGFRAME_ROUTE_CHANNEL, 7, probe, probe_len);
		drain(1, 120000);
	}
	/* Stays until the monitor ends the link, as a network side does. */
	drain(0, 3600 * 1000);
	return 0;
}

int main(int argc, char **argv)
{
	log_init("kps-agent");
	if (argc < 1 || !streq(argv[0], "kps-agent-net"))
		return 2;
	int r = helper_role(argc, argv, NETSIDE_LINK_FD);
	return r ? r : hostile_main();
}
