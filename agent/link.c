/* A socketpair end between two of the daemon's processes (link.h). Input
 * lands in one buffer of the largest frame's size, never grown, and every
 * frame is wiped there once taken; output is a list of frames, each wiped
 * as it leaves. */
#include <fcntl.h>
#include <sys/socket.h>

#include "link.h"
#include "log.h"
#include "util.h"

#define LINK_FDS_MAX 4		/* descriptors received and not yet taken */

struct link_out {
	struct link_out *next;
	uint8_t *data;
	size_t len, off;
	int fd;
};

struct link {
	int fd;
	unsigned types, fd_types;
	size_t max;
	link_frame_fn *frame;
	link_closed_fn *closed;
	void *arg;
	struct event *read_ev, *write_ev;
	uint8_t *in;		/* MSGFRAME_HEADER + max bytes */
	size_t in_len;
	int fds[LINK_FDS_MAX];
	size_t n_fds;
	struct link_out *head, *tail;
	size_t pending;
	bool ended;
};

static void link_out_free(struct link_out *o)
{
	explicit_bzero(o->data, o->len);
	free(o->data);
	closep(&o->fd);
	free(o);
}

static int link_fd_take(struct link *l)
{
	if (l->n_fds == 0)
		return -1;
	int fd = l->fds[0];
	memmove(l->fds, l->fds + 1, --l->n_fds * sizeof(int));
	return fd;
}

static void link_end(struct link *l, int err)
{
	if (l->ended)
		return;
	l->ended = true;
	event_del(l->read_ev);
	event_del(l->write_ev);
	l->closed(l->arg, err);
}

/* Keeps the descriptors that came, up to LINK_FDS_MAX; closes the rest. */
static void link_keep_fds(struct link *l, struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (l->n_fds < LINK_FDS_MAX && l->fd_types)
				l->fds[l->n_fds++] = fd;
			else
				close(fd);
		}
	}
}

/* Calls back for every whole frame in the buffer; 0, or why the link
 * must end. */
static int link_frames(struct link *l)
{
	size_t off = 0;
	int r = 0;
	while (!l->ended) {
		struct msgframe f;
		r = msgframe_peek(l->in + off, l->in_len - off, l->types, l->max, &f);
		if (r == -EAGAIN || (r == 0 && l->in_len - off < MSGFRAME_HEADER + f.len)) {
			r = 0;
			break;
		}
		if (r < 0)
			break;
		char *payload = (char *)l->in + off + MSGFRAME_HEADER;
		char saved = payload[f.len];
		payload[f.len] = '\0';
		int fd = (l->fd_types & (1U << f.type)) ? link_fd_take(l) : -1;
		l->frame(l->arg, &f, payload, fd);
		payload[f.len] = saved;
		explicit_bzero(l->in + off, MSGFRAME_HEADER + f.len);
		off += MSGFRAME_HEADER + f.len;
	}
	if (off > 0) {
		memmove(l->in, l->in + off, l->in_len - off);
		explicit_bzero(l->in + l->in_len - off, off);
		l->in_len -= off;
	}
	return r;
}

static void link_read(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * LINK_FDS_MAX)];
	} ctl;
	(void)what;
	/* One byte past the largest frame: room to see a header that is
	 * refused, never a reason to grow. */
	struct iovec iov = { l->in + l->in_len, MSGFRAME_HEADER + l->max + 1 - l->in_len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			    .msg_controllen = sizeof(ctl.buf) };
	ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		link_keep_fds(l, &m);
	if (n <= 0) {
		/* End of file inside a frame: the peer cut it short. */
		link_end(l, n < 0 ? -errno : l->in_len > 0 ? -ECONNRESET : 0);
		return;
	}
	l->in_len += (size_t)n;
	int r = link_frames(l);
	if (r < 0)
		link_end(l, r);
}

static int link_flush(struct link *l)
{
	while (l->head) {
		struct link_out *o = l->head;
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct iovec iov = { o->data + o->off, o->len - o->off };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (o->off == 0 && o->fd >= 0) {
			memset(&ctl, 0, sizeof(ctl));
			m.msg_control = ctl.buf;
			m.msg_controllen = sizeof(ctl.buf);
			struct cmsghdr *c = CMSG_FIRSTHDR(&m);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(c), &o->fd, sizeof(int));
		}
		ssize_t n = sendmsg(l->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return 0;
		if (n < 0)
			return -errno;
		o->off += (size_t)n;
		l->pending -= (size_t)n;
		if (o->off < o->len)
			continue;
		l->head = o->next;
		if (!l->head)
			l->tail = NULL;
		link_out_free(o);
	}
	return 0;
}

static void link_write(evutil_socket_t fd, short what, void *arg)
{
	struct link *l = arg;
	(void)fd;
	(void)what;
	int r = link_flush(l);
	if (r < 0)
		link_end(l, r);
	else if (!l->head)
		event_del(l->write_ev);
}

int link_send(struct link *l, enum msgframe_type type, const void *a, size_t alen, const void *b, size_t blen,
	      int pass_fd)
{
	if (l->ended)
		return -EPIPE;
	if (l->pending > LINK_OUTPUT_MAX)
		return -ENOBUFS;
	if (alen + blen > UINT32_MAX)
		return -EMSGSIZE;
	struct link_out *o = calloc(1, sizeof(*o));
	uint8_t *data = malloc(MSGFRAME_HEADER + alen + blen);
	int fd = pass_fd >= 0 ? fcntl(pass_fd, F_DUPFD_CLOEXEC, 3) : -1;
	if (!o || !data || (pass_fd >= 0 && fd < 0)) {
		free(o);
		free(data);
		closep(&fd);
		return -ENOMEM;
	}
	msgframe_header(data, type, (uint32_t)(alen + blen));
	if (alen)
		memcpy(data + MSGFRAME_HEADER, a, alen);
	if (blen)
		memcpy(data + MSGFRAME_HEADER + alen, b, blen);
	*o = (struct link_out){ .data = data, .len = MSGFRAME_HEADER + alen + blen, .fd = fd };
	if (l->tail)
		l->tail->next = o;
	else
		l->head = o;
	l->tail = o;
	l->pending += o->len;
	int r = link_flush(l);
	if (r < 0)
		return r;
	if (l->head && event_add(l->write_ev, NULL) < 0)
		return -ENOMEM;
	return 0;
}

size_t link_pending(const struct link *l)
{
	return l->pending;
}

struct link *link_new(struct event_base *base, int fd, unsigned types, unsigned fd_types, size_t max,
		      link_frame_fn *frame, link_closed_fn *closed, void *arg)
{
	struct link *l = calloc(1, sizeof(*l));
	if (!l) {
		close(fd);
		return NULL;
	}
	*l = (struct link){ .fd = fd, .types = types, .fd_types = fd_types, .max = max, .frame = frame,
			    .closed = closed, .arg = arg };
	l->in = malloc(MSGFRAME_HEADER + max + 1);
	l->read_ev = event_new(base, fd, EV_READ | EV_PERSIST, link_read, l);
	l->write_ev = event_new(base, fd, EV_WRITE | EV_PERSIST, link_write, l);
	if (!l->in || !l->read_ev || !l->write_ev || evutil_make_socket_nonblocking(fd) < 0 ||
	    event_add(l->read_ev, NULL) < 0) {
		link_free(l);
		return NULL;
	}
	return l;
}

void link_free(struct link *l)
{
	if (!l)
		return;
	if (l->read_ev)
		event_free(l->read_ev);
	if (l->write_ev)
		event_free(l->write_ev);
	while (l->head) {
		struct link_out *o = l->head;
		l->head = o->next;
		link_out_free(o);
	}
	while (l->n_fds)
		close(link_fd_take(l));
	if (l->in) {
		explicit_bzero(l->in, MSGFRAME_HEADER + l->max + 1);
		free(l->in);
	}
	closep(&l->fd);
	free(l);
}
