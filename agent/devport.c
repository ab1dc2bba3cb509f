/* The host's port. A virtio-serial port reads end of file whenever no host
 * is connected, and closing it makes the kernel drop whatever the host had
 * already sent: a host that disconnects and at once connects again with
 * its next task would lose that task if the agent closed the port between
 * the two. So a virtio port is never closed at end of file: a duplicate of
 * its descriptor holds it open, and reading starts again when the host
 * comes back. The kernel says when with SIGIO (O_ASYNC: it signals every
 * change of the host's connection); a timer backs that up, short at first
 * and then rarely, since a signal that came while the last reader was
 * still finishing is not missed but only delayed to the next try. A tty
 * (a pty in tests, a console port) cannot be held so: at end of file its
 * other side is gone for good, and the path is opened again. */
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <termios.h>

#include "devport.h"
#include "log.h"
#include "util.h"

#define DEVPORT_RETRY_MS 1000
#define DEVPORT_HOLD_FIRST_MS 200
#define DEVPORT_HOLD_MAX_MS 30000

struct devport {
	struct event_base *base;
	char *path;
	devport_request_fn *request;
	devport_attach_fn *attach;
	void *arg;
	struct event *timer;
	struct event *sigio;
	int held_fd;		/* the port while no reader is on it, or -1 */
	unsigned hold_ms;	/* the timer's next delay while holding */
	bool open_failed;	/* the last open failed and was logged */
	bool opening;		/* asked the monitor to open it; no answer yet */
	bool sigio_seen;	/* a SIGIO while a reader was on the port */
	bool holdable;		/* what is open now is a virtio port */
};

static void devport_arm(struct devport *dp, unsigned ms)
{
	struct timeval tv = { ms / 1000, (suseconds_t)(ms % 1000) * 1000 };
	if (evtimer_add(dp->timer, &tv) < 0)
		log_warnx("channel: cannot arm the timer for %s", dp->path);
}

/* A virtio port (a character device that is not a tty) signals the host's
 * comings and goings; anything else is opened again when it ends. Known at
 * open: a hung-up tty no longer answers isatty(). */
static int devport_setup(struct devport *dp, int fd)
{
	struct stat st;
	dp->holdable = false;
	/* A console-like port would otherwise echo tasks back to the host and
	 * turn newlines into CRLF. */
	if (isatty(fd)) {
		struct termios t;
		if (tcgetattr(fd, &t) < 0)
			return -errno;
		cfmakeraw(&t);
		if (tcsetattr(fd, TCSANOW, &t) < 0)
			return -errno;
		return 0;
	}
	dp->holdable = fstat(fd, &st) == 0 && S_ISCHR(st.st_mode);
	if (!dp->holdable || !dp->sigio)
		return 0;
	/* Without the signal the timer alone notices the host's return. */
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETOWN, getpid()) < 0 || fcntl(fd, F_SETFL, fl | O_ASYNC) < 0)
		log_debug("channel: %s: no SIGIO from the port: %s", dp->path, strerror(errno));
	return 0;
}

static int devport_give(struct devport *dp, int fd)
{
	dp->sigio_seen = false;
	return dp->attach(dp->arg, fd);
}

static int devport_open(struct devport *dp, int fd)
{
	int r = devport_setup(dp, fd);
	if (r < 0) {
		close(fd);
		return r;
	}
	return devport_give(dp, fd);
}

/* A missing port is normal (the VM boots before the host's side is there):
 * keep trying, say so once. */
static void devport_failed(struct devport *dp, int err)
{
	if (!dp->open_failed)
		log_warnx("channel: cannot open %s: %s; retrying every %d s", dp->path, strerror(-err),
			  DEVPORT_RETRY_MS / 1000);
	dp->open_failed = true;
	devport_arm(dp, DEVPORT_RETRY_MS);
}

/* The monitor opens the port (this side may not) and answers in
 * devport_opened. */
static void devport_try_open(struct devport *dp)
{
	if (dp->opening)
		return;
	int r = dp->request(dp->arg);
	if (r < 0) {
		devport_failed(dp, r);
		return;
	}
	dp->opening = true;
}

void devport_opened(struct devport *dp, int fd, int err)
{
	if (!dp->opening) {
		closep(&fd);
		return;
	}
	dp->opening = false;
	int r = err < 0 ? err : fd < 0 ? -EBADF : devport_open(dp, fd);
	if (r < 0) {
		devport_failed(dp, r);
		return;
	}
	if (dp->open_failed)
		log_info("channel: %s is open", dp->path);
	else
		log_debug("channel: %s is open", dp->path);
	dp->open_failed = false;
}

/* The held port gets a reader again: at once at end of file when the host
 * is still away, then the reader hands it back. */
static void devport_resume(struct devport *dp)
{
	int fd = dp->held_fd;
	dp->held_fd = -1;
	evtimer_del(dp->timer);
	if (devport_give(dp, fd) < 0) {
		log_warnx("channel: %s: cannot read the port again; reopening", dp->path);
		devport_arm(dp, DEVPORT_RETRY_MS);
	}
}

static void devport_timer(evutil_socket_t fd, short what, void *arg)
{
	struct devport *dp = arg;
	(void)fd;
	(void)what;
	if (dp->held_fd >= 0)
		devport_resume(dp);
	else
		devport_try_open(dp);
}

static void devport_signal(evutil_socket_t sig, short what, void *arg)
{
	struct devport *dp = arg;
	(void)sig;
	(void)what;
	if (dp->held_fd >= 0)
		devport_resume(dp);
	else
		dp->sigio_seen = true;
}

void devport_lost(struct devport *dp, int fd, bool eof, bool saw_input)
{
	int held = eof && dp->holdable ? fcntl(fd, F_DUPFD_CLOEXEC, 3) : -1;
	if (held < 0) {
		if (saw_input)
			log_info("channel: %s: the host went away (%s); reopening", dp->path,
				 eof ? "end of file" : "read error");
		else
			log_debug("channel: %s: closed (%s)", dp->path, eof ? "end of file" : "read error");
		devport_arm(dp, DEVPORT_RETRY_MS);
		return;
	}
	log_debug("channel: %s: the host went away; holding the port until it comes back", dp->path);
	dp->held_fd = held;
	/* A session that carried tasks starts the waits over; a reader that
	 * met end of file at once (the host is still away) waits longer. A
	 * SIGIO during the last session may have been the host's return. */
	if (saw_input || dp->hold_ms == 0)
		dp->hold_ms = DEVPORT_HOLD_FIRST_MS;
	else if (dp->hold_ms < DEVPORT_HOLD_MAX_MS)
		dp->hold_ms = dp->hold_ms * 2 > DEVPORT_HOLD_MAX_MS ? DEVPORT_HOLD_MAX_MS : dp->hold_ms * 2;
	devport_arm(dp, dp->sigio_seen ? 0 : dp->hold_ms);
}

struct devport *devport_new(struct event_base *base, const char *path, devport_request_fn *request,
			    devport_attach_fn *attach, void *arg)
{
	struct devport *dp = calloc(1, sizeof(*dp));
	if (!dp)
		return NULL;
	*dp = (struct devport){ .base = base, .request = request, .attach = attach, .arg = arg, .held_fd = -1 };
	dp->path = strdup(path);
	dp->timer = evtimer_new(base, devport_timer, dp);
	if (!dp->path || !dp->timer) {
		devport_free(dp);
		return NULL;
	}
	/* SIGIO's default action ends the process: ignored first, so that
	 * libevent restores "ignored" when this handler goes, whatever copy
	 * of the port (a worker's) is still open. */
	signal(SIGIO, SIG_IGN);
	dp->sigio = evsignal_new(base, SIGIO, devport_signal, dp);
	if (dp->sigio && evsignal_add(dp->sigio, NULL) < 0) {
		event_free(dp->sigio);
		dp->sigio = NULL;
	}
	devport_try_open(dp);
	return dp;
}

void devport_free(struct devport *dp)
{
	if (!dp)
		return;
	if (dp->held_fd >= 0)
		close(dp->held_fd);
	if (dp->timer)
		event_free(dp->timer);
	if (dp->sigio)
		event_free(dp->sigio);
	free(dp->path);
	free(dp);
}
