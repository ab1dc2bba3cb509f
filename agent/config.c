/* [agent] [sshd] [control_plane] [channel]: the INI file into struct config,
 * with every value checked here, at the edge. */
#include <glob.h>
#include <ini.h>
#include <limits.h>

#include "config.h"

struct config_parse {
	struct config *cfg;
	const char *file;
	char *err;
	size_t errlen;
};

typedef int (*config_setter)(struct config *cfg, const char *value, const char **why);

struct config_key {
	const char *section;
	const char *name;
	config_setter set;
};

static int set_string(char **field, const char *value)
{
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	free(*field);
	*field = copy;
	return 0;
}

static bool is_absolute_path(const char *v)
{
	return v[0] == '/' && strlen(v) < CONFIG_PATH_MAX && !str_has_ctrl(v, strlen(v));
}

static int set_abs_path(char **field, const char *value, bool may_be_empty, const char **why)
{
	if ((may_be_empty && !*value) || is_absolute_path(value))
		return set_string(field, value);
	*why = may_be_empty ? "must be empty or an absolute path" : "must be an absolute path";
	return -EINVAL;
}

static int parse_seconds(const char *value, int min, int max, int *out, const char **why)
{
	char *end;
	errno = 0;
	long v = strtol(value, &end, 10);
	if (errno || end == value || *end || v < min || v > max) {
		*why = "must be a whole number of seconds in range";
		return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

static int set_state_dir(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->state_dir, v, false, why);
}

/* The portable user names of POSIX (letters, digits, . _ -, no leading
 * '-'), as useradd takes them, at most CONFIG_USER_MAX long. */
static bool is_user_name(const char *v)
{
	return str_is_token(v, CONFIG_USER_MAX) && v[0] != '-';
}

static int set_user(struct config *c, const char *v, const char **why)
{
	if (!is_user_name(v)) {
		*why = "must be a user name";
		return -EINVAL;
	}
	return set_string(&c->user, v);
}

static int set_unprivileged_user(struct config *c, const char *v, const char **why)
{
	if (!is_user_name(v)) {
		*why = "must be a user name";
		return -EINVAL;
	}
	snprintf(c->unprivileged_user, sizeof(c->unprivileged_user), "%s", v);
	return 0;
}

static int set_task_timeout(struct config *c, const char *v, const char **why)
{
	return parse_seconds(v, 5, 3600, &c->task_timeout_s, why);
}

static int set_results_keep(struct config *c, const char *v, const char **why)
{
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || end == v || *end || n < 0 || n > 1000000) {
		*why = "must be a whole number from 0 to 1000000";
		return -EINVAL;
	}
	c->results_keep = (size_t)n;
	return 0;
}

static int set_sshd_binary(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->sshd_binary, v, false, why);
}

static int set_sshd_config(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->sshd_config, v, false, why);
}

static int set_reload(struct config *c, const char *v, const char **why)
{
	static const struct {
		const char *prefix;
		enum reload_kind kind;
		bool arg;
	} kinds[] = {
		{ "auto", RELOAD_AUTO, false },       { "none", RELOAD_NONE, false },
		{ "systemd:", RELOAD_SYSTEMD, true }, { "pidfile:", RELOAD_PIDFILE, true },
		{ "command:", RELOAD_COMMAND, true },
	};
	for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
		size_t n = strlen(kinds[i].prefix);
		if (!kinds[i].arg ? !streq(v, kinds[i].prefix) : strncmp(v, kinds[i].prefix, n) != 0)
			continue;
		const char *arg = v + n;
		if (kinds[i].arg && (!*arg || str_has_ctrl(arg, strlen(arg)))) {
			*why = "needs a value after the colon";
			return -EINVAL;
		}
		if ((kinds[i].kind == RELOAD_PIDFILE || kinds[i].kind == RELOAD_COMMAND) && arg[0] != '/') {
			*why = "needs an absolute path after the colon";
			return -EINVAL;
		}
		c->reload = kinds[i].kind;
		free(c->reload_arg);
		c->reload_arg = NULL;
		return kinds[i].arg ? set_string(&c->reload_arg, arg) : 0;
	}
	*why = "must be auto, none, systemd:UNIT, pidfile:PATH or command:ARGV";
	return -EINVAL;
}

static int set_address(struct config *c, const char *v, const char **why)
{
	size_t n = strlen(v);
	if (n == 0 || n > 64 || strspn(v, "0123456789abcdefABCDEF.:") != n) {
		if (!streq(v, "localhost")) {
			*why = "must be an IP address or localhost";
			return -EINVAL;
		}
	}
	return set_string(&c->address, v);
}

static int set_connect_timeout(struct config *c, const char *v, const char **why)
{
	int s;
	int r = parse_seconds(v, 1, 120, &s, why);
	if (r == 0)
		c->connect_timeout_ms = s * 1000;
	return r;
}

static int set_probe_timeout(struct config *c, const char *v, const char **why)
{
	int s;
	int r = parse_seconds(v, 1, 300, &s, why);
	if (r == 0)
		c->probe_timeout_ms = s * 1000;
	return r;
}

static int set_key_fragment(struct config *c, const char *v, const char **why)
{
	if (!streq(v, "auto") && !streq(v, "no")) {
		*why = "must be auto or no";
		return -EINVAL;
	}
	c->key_fragment = streq(v, "auto");
	return 0;
}

static int set_url(struct config *c, const char *v, const char **why)
{
	if (*v && strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
		*why = "must be empty or an http:// or https:// URL";
		return -EINVAL;
	}
	if (strlen(v) > 2048 || str_has_ctrl(v, strlen(v)) || strpbrk(v, " \"<>\\^`{|}")) {
		*why = "is not a valid URL";
		return -EINVAL;
	}
	return set_string(&c->url, v);
}

static int set_server_id(struct config *c, const char *v, const char **why)
{
	if (*v && !str_is_token(v, 128)) {
		*why = "must be 1-128 of [A-Za-z0-9._-]";
		return -EINVAL;
	}
	return set_string(&c->server_id, v);
}

static int set_token_file(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->token_file, v, true, why);
}

static int set_ca_file(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->ca_file, v, true, why);
}

static int set_poll_wait(struct config *c, const char *v, const char **why)
{
	return parse_seconds(v, 1, 600, &c->poll_wait_s, why);
}

/* A percentage of poll_wait: 0 (no jitter) to 100. */
static int set_poll_jitter(struct config *c, const char *v, const char **why)
{
	int r = parse_seconds(v, 0, 100, &c->poll_jitter_pct, why);
	if (r == -EINVAL)
		*why = "must be a whole percentage, 0 to 100";
	return r;
}

static int set_socket(struct config *c, const char *v, const char **why)
{
	if (strlen(v) >= 108) {
		*why = "is longer than a unix socket path may be";
		return -EINVAL;
	}
	return set_abs_path(&c->socket, v, true, why);
}

static int set_device(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->device, v, true, why);
}

/* [control_plane] verify_key and [policy]: the operator's controls. */
static int set_verify_key(struct config *c, const char *v, const char **why)
{
	return set_abs_path(&c->verify_key, v, true, why);
}

static int set_bool(bool *field, const char *v, const char **why)
{
	if (streq(v, "yes") || streq(v, "true") || streq(v, "1"))
		*field = true;
	else if (streq(v, "no") || streq(v, "false") || streq(v, "0"))
		*field = false;
	else {
		*why = "must be yes or no";
		return -EINVAL;
	}
	return 0;
}

static int set_policy_users(struct config *c, const char *v, const char **why)
{
	_cleanup_strv_ struct strv users = { 0 };
	_cleanup_free_ char *copy = strdup(v);
	if (!copy)
		return -ENOMEM;
	for (char *save = NULL, *u = strtok_r(copy, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
		u += strspn(u, " \t");
		size_t n = strlen(u);
		while (n > 0 && (u[n - 1] == ' ' || u[n - 1] == '\t'))
			u[--n] = '\0';
		if (!is_user_name(u)) {
			*why = "must be a comma-separated list of user names";
			return -EINVAL;
		}
		if (!strv_contains(&users, u) && strv_push(&users, u) < 0)
			return -ENOMEM;
	}
	strv_free(&c->policy_users);
	c->policy_users = users;
	users = (struct strv){ 0 };
	return 0;
}

static int set_allow_root(struct config *c, const char *v, const char **why)
{
	return set_bool(&c->allow_root, v, why);
}

static int set_allow_port(struct config *c, const char *v, const char **why)
{
	return set_bool(&c->allow_port, v, why);
}

static int set_allow_password_login(struct config *c, const char *v, const char **why)
{
	return set_bool(&c->allow_password_login, v, why);
}

static const struct config_key config_keys[] = {
	{ "agent", "state_dir", set_state_dir },
	{ "agent", "user", set_user },
	{ "agent", "task_timeout", set_task_timeout },
	{ "agent", "results_keep", set_results_keep },
	{ "agent", "unprivileged_user", set_unprivileged_user },
	{ "sshd", "binary", set_sshd_binary },
	{ "sshd", "config", set_sshd_config },
	{ "sshd", "reload", set_reload },
	{ "sshd", "address", set_address },
	{ "sshd", "connect_timeout", set_connect_timeout },
	{ "sshd", "probe_timeout", set_probe_timeout },
	{ "sshd", "key_fragment", set_key_fragment },
	{ "control_plane", "url", set_url },
	{ "control_plane", "server_id", set_server_id },
	{ "control_plane", "token_file", set_token_file },
	{ "control_plane", "ca_file", set_ca_file },
	{ "control_plane", "poll_wait", set_poll_wait },
	{ "control_plane", "poll_jitter", set_poll_jitter },
	{ "channel", "socket", set_socket },
	{ "channel", "device", set_device },
	{ "control_plane", "verify_key", set_verify_key },
	{ "policy", "users", set_policy_users },
	{ "policy", "allow_root", set_allow_root },
	{ "policy", "allow_port", set_allow_port },
	{ "policy", "allow_password_login", set_allow_password_login },
};

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
	struct config_parse *p = user;
	bool known_section = false;
	for (size_t i = 0; i < ELEMENTSOF(config_keys); i++) {
		if (!streq(config_keys[i].section, section))
			continue;
		known_section = true;
		if (!streq(config_keys[i].name, name))
			continue;
		const char *why = "is not valid";
		int r = config_keys[i].set(p->cfg, value, &why);
		if (r >= 0 && (buf_append(&p->cfg->settings, section, strlen(section) + 1) < 0 ||
			       buf_append(&p->cfg->settings, name, strlen(name) + 1) < 0 ||
			       buf_append(&p->cfg->settings, value, strlen(value) + 1) < 0))
			r = -ENOMEM;
		if (r == -ENOMEM)
			snprintf(p->err, p->errlen, "%s: out of memory", p->file);
		else if (r < 0)
			snprintf(p->err, p->errlen, "%s: [%s] %s %s", p->file, section, name, why);
		return r < 0 ? 0 : 1;
	}
	if (!known_section)
		snprintf(p->err, p->errlen, "%s: unknown section [%s] (key %s)", p->file, section, name);
	else
		snprintf(p->err, p->errlen, "%s: unknown key %s in section [%s]", p->file, name, section);
	return 0;
}

static int config_parse_file(const char *path, bool must_exist, struct config *cfg, char *err, size_t errlen)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		if (e == ENOENT && !must_exist)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	struct config_parse p = { .cfg = cfg, .file = path, .err = err, .errlen = errlen };
	err[0] = '\0';
	int line = ini_parse_file(f, config_handler, &p);
	if (line == 0)
		return 0;
	if (line < 0) {
		snprintf(err, errlen, "%s: cannot read", path);
		return -EIO;
	}
	/* inih reports the first failing line; put it after the file name. */
	char detail[512];
	snprintf(detail, sizeof(detail), "%s", err[0] ? err + strlen(path) + 2 : "syntax error");
	snprintf(err, errlen, "%s:%d: %s", path, line, detail);
	return -EINVAL;
}

static int config_parse_dropins(const char *path, struct config *cfg, char *err, size_t errlen)
{
	char pattern[CONFIG_PATH_MAX + 32];
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 0;
	snprintf(pattern, sizeof(pattern), "%.*s/conf.d/*.conf", dirlen, path);
	glob_t g = { 0 };
	int r = glob(pattern, GLOB_ERR, NULL, &g);
	if (r == GLOB_NOMATCH || (r == GLOB_ABORTED && errno == ENOENT))
		r = 0;
	else if (r != 0) {
		snprintf(err, errlen, "%s: cannot list drop-ins", pattern);
		r = -EIO;
	}
	/* glob sorts, so drop-ins apply in name order. */
	for (size_t i = 0; r == 0 && i < g.gl_pathc; i++)
		r = config_parse_file(g.gl_pathv[i], true, cfg, err, errlen);
	globfree(&g);
	return r;
}

void config_init_defaults(struct config *cfg)
{
	*cfg = (struct config){
		.state_dir = strdup("/var/lib/kps-agent"),
		.user = strdup("root"),
		.task_timeout_s = 60,
		.results_keep = 1000,
		.unprivileged_user = "kps-agent",
		.sshd_binary = strdup("/usr/sbin/sshd"),
		.sshd_config = strdup("/etc/ssh/sshd_config"),
		.reload = RELOAD_AUTO,
		.address = strdup("127.0.0.1"),
		.connect_timeout_ms = 5000,
		.probe_timeout_ms = 10000,
		.key_fragment = true,
		.url = strdup(""),
		.server_id = strdup(""),
		.token_file = strdup(""),
		.ca_file = strdup(""),
		.poll_wait_s = 60,
		.poll_jitter_pct = 10,
		.socket = strdup("/run/kps-agent/agent.sock"),
		.device = strdup(""),
		.verify_key = strdup(""),
		.allow_root = true,
		.allow_port = true,
		.allow_password_login = true,
	};
}

static bool config_complete(const struct config *c)
{
	return c->state_dir && c->user && c->sshd_binary && c->sshd_config && c->address && c->url &&
	       c->server_id && c->token_file && c->ca_file && c->socket && c->device && c->verify_key;
}

/* A key file that cannot be read would refuse every task: refuse to start. */
static int config_verify_keys(struct config *cfg, char *err, size_t errlen)
{
	char why[512] = "";
	if (!cfg->verify_key[0])
		return 0;
	int r = signature_keys_load(cfg->verify_key, &cfg->verify_keys, why, sizeof(why));
	if (r < 0)
		snprintf(err, errlen, "[control_plane] verify_key %s", why);
	return r;
}

int config_load_settings(const char *data, size_t len, struct config *cfg, char *err, size_t errlen)
{
	config_init_defaults(cfg);
	if (!config_complete(cfg)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	struct config_parse p = { .cfg = cfg, .file = "(the monitor's configuration)", .err = err, .errlen = errlen };
	const char *f[3];
	size_t off = 0;
	while (off < len) {
		for (int k = 0; k < 3; k++) {
			size_t n = off < len ? strnlen(data + off, len - off) : 0;
			if (off >= len || off + n == len) {
				snprintf(err, errlen, "the monitor's configuration is cut short");
				return -EBADMSG;
			}
			f[k] = data + off;
			off += n + 1;
		}
		if (config_handler(&p, f[0], f[1], f[2]) == 0)
			return -EINVAL;
	}
	return config_verify_keys(cfg, err, errlen);
}

int config_load(const char *path, bool must_exist, struct config *cfg, char *err, size_t errlen)
{
	config_init_defaults(cfg);
	if (!config_complete(cfg)) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	int r = config_parse_file(path, must_exist, cfg, err, errlen);
	if (r < 0)
		return r;
	if (access(path, F_OK) == 0) {
		cfg->path = strdup(path);
		if (!cfg->path)
			return -ENOMEM;
		r = config_parse_dropins(path, cfg, err, errlen);
	}
	if (r == 0)
		r = config_verify_keys(cfg, err, errlen);
	return r;
}

void config_free(struct config *c)
{
	char **fields[] = { &c->path, &c->state_dir, &c->user, &c->sshd_binary, &c->sshd_config,
			    &c->reload_arg, &c->address, &c->url, &c->server_id, &c->token_file,
			    &c->ca_file, &c->socket, &c->device, &c->verify_key };
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
	signature_keys_free(&c->verify_keys);
	buf_free(&c->settings);
	strv_free(&c->policy_users);
}

char *config_server_id(const struct config *cfg)
{
	if (cfg->server_id && *cfg->server_id)
		return strdup(cfg->server_id);
	_cleanup_fclose_ FILE *f = fopen("/sys/class/dmi/id/product_uuid", "re");
	if (!f)
		return NULL;
	char line[128];
	if (!fgets(line, sizeof(line), f))
		return NULL;
	line[strcspn(line, "\r\n")] = '\0';
	for (char *p = line; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return str_is_token(line, 128) ? strdup(line) : NULL;
}
