/* How sshd is reloaded and started again: the plan (pure, so the choice
 * of units is unit-tested without a running systemd) and its steps, through
 * systemd's bus, a signal, a command or the sshd binary. A bus step waits
 * for its job to finish, so that steps that must follow one another (stop
 * the socket, stop sshd, start the socket) do. */
#include <limits.h>
#include <signal.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "log.h"
#include "sshd.h"

#define RELOAD_COMMAND_TIMEOUT_MS 30000
#define RELOAD_COMMAND_MAX_ARGS 32
#define BUS_JOB_TIMEOUT_MS 30000

static void plan_add(struct reload_plan *plan, enum reload_step_kind kind, const char *arg)
{
	if (plan->n < RELOAD_MAX_STEPS)
		plan->steps[plan->n++] = (struct reload_step){ kind, arg, NULL };
}

static int plan_systemd(const struct sshd_units *u, const char *unit, bool port_changed, struct reload_plan *plan)
{
	/* The socket unit's ListenStream comes from sshd_config through a
	 * generator (the distribution's, or kps-agent-generator): a
	 * daemon-reload and a new start of the socket move the port. A running
	 * sshd (Accept=no) holds the socket it was handed and keeps it bound,
	 * and systemd refuses to start a socket whose service runs: the socket
	 * stops first (no activation with the old one meanwhile), then sshd
	 * (its sessions stay: KillMode=process) whether or not it ran when
	 * the units were asked (a connection since, the proof's own, may have
	 * started it), then the socket starts, and sshd again if it ran. */
	if (port_changed && u->ssh_socket_active) {
		plan_add(plan, STEP_BUS_DAEMON_RELOAD, NULL);
		plan_add(plan, STEP_BUS_STOP, "ssh.socket");
		plan_add(plan, STEP_BUS_STOP, unit);
		plan_add(plan, STEP_BUS_START, "ssh.socket");
		if (u->service_active)
			plan_add(plan, STEP_BUS_START, unit);
		return 0;
	}
	/* A socket-activated sshd closes the sockets it was handed when it
	 * re-executes on SIGHUP, then binds the ports itself, which the
	 * socket holds: it exits (Debian 13, "Cannot bind any address"). It is
	 * restarted instead, with the socket's descriptors again; the socket
	 * queues connections meanwhile and sessions stay (KillMode=process). */
	if (u->service_active)
		plan_add(plan, u->ssh_socket_active ? STEP_BUS_RESTART : STEP_BUS_RELOAD, unit);
	/* Socket activation with no sshd running yet: the next connection
	 * starts one that reads the new config; nothing to reload. */
	return plan->n || u->ssh_socket_active ? 0 : -ENOENT;
}

int sshd_reload_plan(const struct config *cfg, const struct sshd_settings *s, const struct sshd_units *units,
		     bool port_changed, struct reload_plan *plan)
{
	*plan = (struct reload_plan){ 0 };
	switch (cfg->reload) {
	case RELOAD_NONE:
		return 0;
	case RELOAD_PIDFILE:
		plan_add(plan, STEP_SIGNAL, cfg->reload_arg);
		return 0;
	case RELOAD_COMMAND:
		plan_add(plan, STEP_COMMAND, cfg->reload_arg);
		return 0;
	case RELOAD_SYSTEMD:
		if (!units->bus)
			return -ENOENT;
		return plan_systemd(units, cfg->reload_arg, port_changed, plan);
	case RELOAD_AUTO:
		if (units->bus && (units->ssh_service || units->sshd_service)) {
			const char *unit = units->ssh_service ? "ssh.service" : "sshd.service";
			if (plan_systemd(units, unit, port_changed, plan) == 0)
				return 0;
		}
		if (!s->pidfile || streq(s->pidfile, "none"))
			return -ENOENT;
		plan_add(plan, STEP_SIGNAL, s->pidfile);
		return 0;
	}
	return -EINVAL;
}

int sshd_start_plan(const struct config *cfg, const struct sshd_units *units, struct reload_plan *plan)
{
	*plan = (struct reload_plan){ 0 };
	bool systemd = units->bus && (cfg->reload == RELOAD_AUTO || cfg->reload == RELOAD_SYSTEMD);
	/* Socket activation: the socket on the ports sshd_config names now,
	 * sshd stopped first (systemd refuses to start a socket whose service
	 * runs); the next connection starts sshd. */
	if (systemd && units->ssh_socket_active) {
		const char *unit = cfg->reload == RELOAD_SYSTEMD ? cfg->reload_arg
				   : units->sshd_service		? "sshd.service"
									: "ssh.service";
		plan_add(plan, STEP_BUS_DAEMON_RELOAD, NULL);
		plan_add(plan, STEP_BUS_STOP, "ssh.socket");
		plan_add(plan, STEP_BUS_STOP, unit);
		plan_add(plan, STEP_BUS_START, "ssh.socket");
		return 0;
	}
	if (systemd && cfg->reload == RELOAD_SYSTEMD) {
		plan_add(plan, STEP_BUS_RESTART, cfg->reload_arg);
		return 0;
	}
	if (systemd && (units->ssh_service || units->sshd_service)) {
		plan_add(plan, STEP_BUS_RESTART, units->ssh_service ? "ssh.service" : "sshd.service");
		return 0;
	}
	bool vendor;
	char buf[PATH_MAX];
	snprintf(plan->config, sizeof(plan->config), "%s", sshd_main_config(cfg, buf, sizeof(buf), &vendor));
	plan_add(plan, STEP_START_SSHD, cfg->sshd_binary);
	plan->steps[0].arg2 = plan->config;
	return 0;
}

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT "org.freedesktop.systemd1.Unit"

static void bus_unrefp(sd_bus **b)
{
	sd_bus_flush_close_unref(*b);
}

/* LoadState and ActiveState of a unit, without loading it if unknown. */
static void unit_state(sd_bus *bus, const char *unit, bool *loaded, bool *active)
{
	sd_bus_message *reply = NULL;
	const char *path;
	*loaded = *active = false;
	if (sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "GetUnit", NULL, &reply, "s", unit) < 0)
		return;
	if (sd_bus_message_read(reply, "o", &path) >= 0) {
		char *state = NULL;
		*loaded = true;
		if (sd_bus_get_property_string(bus, SD_DEST, path, SD_UNIT, "ActiveState", NULL, &state) >= 0)
			*active = streq(state, "active") || streq(state, "reloading");
		free(state);
	}
	sd_bus_message_unref(reply);
}

void sshd_units_query(struct sshd_units *u)
{
	*u = (struct sshd_units){ 0 };
	_cleanup_(bus_unrefp) sd_bus *bus = NULL;
	if (access("/run/systemd/system", F_OK) < 0 || sd_bus_open_system(&bus) < 0)
		return;
	u->bus = true;
	bool active = false;
	unit_state(bus, "ssh.service", &u->ssh_service, &active);
	u->service_active = active;
	if (!u->ssh_service) {
		unit_state(bus, "sshd.service", &u->sshd_service, &active);
		u->service_active = active;
	}
	bool socket_loaded;
	unit_state(bus, "ssh.socket", &socket_loaded, &u->ssh_socket_active);
}

static const char *bus_verb(enum reload_step_kind kind)
{
	switch (kind) {
	case STEP_BUS_RELOAD:
		return "reload";
	case STEP_BUS_RESTART:
		return "restart";
	case STEP_BUS_STOP:
		return "stop";
	case STEP_BUS_START:
		return "start";
	default:
		return "reload";
	}
}

static const char *bus_method(enum reload_step_kind kind)
{
	switch (kind) {
	case STEP_BUS_RESTART:
		return "RestartUnit";
	case STEP_BUS_STOP:
		return "StopUnit";
	case STEP_BUS_START:
		return "StartUnit";
	default:
		return "ReloadUnit";
	}
}

/* A job object exists while its job runs: waits until it is gone. */
static int bus_job_wait(sd_bus *bus, const char *job)
{
	int64_t until = now_ms() + BUS_JOB_TIMEOUT_MS;
	for (;;) {
		char *state = NULL;
		int r = sd_bus_get_property_string(bus, SD_DEST, job, "org.freedesktop.systemd1.Job", "State", NULL,
						   &state);
		free(state);
		if (r < 0)
			return 0;
		if (now_ms() >= until)
			return -ETIMEDOUT;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

/* The unit's job, run to its end; a start must leave the unit active. */
static int bus_unit_step(sd_bus *bus, const struct reload_step *step, sd_bus_error *error, char *msg, size_t msglen)
{
	sd_bus_message *reply = NULL;
	const char *job;
	int r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, bus_method(step->kind), error, &reply, "ss",
				   step->arg, "replace");
	if (r >= 0 && sd_bus_message_read(reply, "o", &job) >= 0 && bus_job_wait(bus, job) < 0) {
		snprintf(msg, msglen, "systemd did not %s %s within %d s", bus_verb(step->kind), step->arg,
			 BUS_JOB_TIMEOUT_MS / 1000);
		r = -ETIMEDOUT;
	}
	sd_bus_message_unref(reply);
	if (r >= 0 && (step->kind == STEP_BUS_START || step->kind == STEP_BUS_RESTART)) {
		bool loaded, active;
		unit_state(bus, step->arg, &loaded, &active);
		if (!active) {
			snprintf(msg, msglen, "systemd could not %s %s (see journalctl -u %s)", bus_verb(step->kind),
				 step->arg, step->arg);
			r = -EIO;
		}
	}
	return r;
}

static int bus_step(const struct reload_step *step, char *msg, size_t msglen)
{
	_cleanup_(bus_unrefp) sd_bus *bus = NULL;
	sd_bus_error error = SD_BUS_ERROR_NULL;
	int r = sd_bus_open_system(&bus);
	if (r >= 0 && step->kind == STEP_BUS_DAEMON_RELOAD)
		r = sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, "Reload", &error, NULL, "");
	else if (r >= 0)
		r = bus_unit_step(bus, step, &error, msg, msglen);
	if (r < 0 && (!msg[0] || error.message))
		snprintf(msg, msglen, "systemd refused to %s %s: %s", bus_verb(step->kind),
			 step->arg ? step->arg : "itself", error.message ? error.message : strerror(-r));
	sd_bus_error_free(&error);
	return r < 0 ? r : 0;
}

static int signal_step(const char *pidfile, char *msg, size_t msglen)
{
	struct sshd_settings s = { .pidfile = (char *)pidfile };
	pid_t pid = sshd_running_pid(&s);
	if (pid <= 0) {
		snprintf(msg, msglen, "no running sshd in pid file %s", pidfile);
		return -ESRCH;
	}
	if (kill(pid, SIGHUP) < 0) {
		int e = errno;
		snprintf(msg, msglen, "cannot signal sshd (pid %ld): %s", (long)pid, strerror(e));
		return -e;
	}
	return 0;
}

static int command_step(const char *cmdline, char *msg, size_t msglen)
{
	_cleanup_free_ char *copy = strdup(cmdline);
	char *argv[RELOAD_COMMAND_MAX_ARGS + 1];
	size_t n = 0;
	if (!copy)
		return -ENOMEM;
	for (char *save = NULL, *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
		if (n == RELOAD_COMMAND_MAX_ARGS)
			return -E2BIG;
		argv[n++] = t;
	}
	argv[n] = NULL;
	if (n == 0)
		return -EINVAL;
	char err[200] = "";
	int r = sshd_exec(argv, RELOAD_COMMAND_TIMEOUT_MS, NULL, err, sizeof(err));
	if (r != 0)
		snprintf(msg, msglen, "reload command %s %s%s%s", argv[0],
			 r < 0 ? "could not run" : "failed", err[0] ? ": " : "", err);
	return r == 0 ? 0 : -EIO;
}

static int start_step(const struct reload_step *step, char *msg, size_t msglen)
{
	char *argv[] = { (char *)step->arg, "-f", (char *)step->arg2, NULL };
	char err[200] = "";
	int r = sshd_exec(argv, RELOAD_COMMAND_TIMEOUT_MS, NULL, err, sizeof(err));
	if (r != 0)
		snprintf(msg, msglen, "cannot start %s: %s", step->arg, err[0] ? err : r < 0 ? strerror(-r) : "it failed");
	return r == 0 ? 0 : -EIO;
}

int sshd_reload_run(const struct reload_plan *plan, char *msg, size_t msglen)
{
	for (size_t i = 0; i < plan->n; i++) {
		const struct reload_step *step = &plan->steps[i];
		int r;
		switch (step->kind) {
		case STEP_SIGNAL:
			r = signal_step(step->arg, msg, msglen);
			break;
		case STEP_COMMAND:
			r = command_step(step->arg, msg, msglen);
			break;
		case STEP_START_SSHD:
			r = start_step(step, msg, msglen);
			break;
		default:
			r = bus_step(step, msg, msglen);
			break;
		}
		if (r < 0)
			return r;
	}
	return 0;
}
