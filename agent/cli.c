/* check's output is apply's; submit is a client of the daemon's socket;
 * list and status read the state dir and the users' key files, and write
 * nothing. People get aligned columns, machines --json. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "cli.h"
#include "daemon.h"
#include "managed.h"
#include "task.h"

#define SUBMIT_ANSWER_MAX ((size_t)1024 * 1024)

int cli_read_task(const char *path, char **ret, size_t *len)
{
	_cleanup_fclose_ FILE *f = NULL;
	FILE *in = stdin;
	if (path && !streq(path, "-")) {
		f = fopen(path, "re");
		if (!f)
			return -errno;
		in = f;
	}
	_cleanup_buf_ struct buf b = { 0 };
	/* One byte past the limit is enough for the parser to refuse it; an
	 * envelope carries a task in base64, a third larger. */
	while (b.len <= (size_t)TASK_MAX_BYTES * 2) {
		int r = buf_reserve(&b, 8192);
		if (r < 0)
			return r;
		size_t n = fread(b.data + b.len, 1, 8192, in);
		b.len += n;
		if (n == 0)
			break;
	}
	if (ferror(in))
		return -EIO;
	b.data[b.len] = '\0';
	*ret = buf_steal(&b, len);
	return 0;
}

/* Options shared by the commands: --task, --user, --json. */
struct cli_opts {
	const char *task;
	const char *user;
	bool json;
};

static int cli_parse(const char *cmd, int argc, char **argv, const char *allowed, struct cli_opts *o)
{
	static const struct option opts[] = {
		{ "task", required_argument, NULL, 't' },
		{ "user", required_argument, NULL, 'u' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	int c;
	*o = (struct cli_opts){ 0 };
	optind = 1;
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == '?' || !strchr(allowed, c)) {
			fprintf(stderr, "kps-agent: %s: unknown or misplaced option (see --help)\n", cmd);
			return -EINVAL;
		}
		if (c == 't')
			o->task = optarg;
		else if (c == 'u')
			o->user = optarg;
		else
			o->json = true;
	}
	if (optind < argc) {
		fprintf(stderr, "kps-agent: %s: unexpected argument %s\n", cmd, argv[optind]);
		return -EINVAL;
	}
	return 0;
}

/* -- submit ------------------------------------------------------------ */

/* The channel is one task per line. JSON has no raw line break inside a
 * string, so outside strings a break is a blank; inside one the text is
 * not JSON and is refused here, as the daemon would. */
static int one_line(char *text, size_t len)
{
	bool in_string = false;
	for (size_t i = 0; i < len; i++) {
		if (in_string && text[i] == '\\') {
			i++;
		} else if (text[i] == '"') {
			in_string = !in_string;
		} else if (text[i] == '\n' || text[i] == '\r') {
			if (in_string)
				return -EINVAL;
			text[i] = ' ';
		}
	}
	return 0;
}

static int submit_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (!path[0] || strlen(path) >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The daemon's answer: one line. */
static int read_line(int fd, struct buf *b)
{
	for (;;) {
		char *nl = b->data ? memchr(b->data, '\n', b->len) : NULL;
		if (nl) {
			*nl = '\0';
			b->len = (size_t)(nl - b->data);
			return 0;
		}
		if (b->len > SUBMIT_ANSWER_MAX || buf_reserve(b, 4096) < 0)
			return -EMSGSIZE;
		ssize_t n = read(fd, b->data + b->len, 4096);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		b->len += (size_t)n;
		b->data[b->len] = '\0';
	}
}

static int submit_local_refusal(char *text, size_t len)
{
	struct task t;
	struct result res;
	result_init(&res);
	task_parse(text, len, &t, &res);
	task_free(&t);
	result_fail(&res, ERR_INVALID_TASK, "task is not valid JSON: a line break inside a string");
	_cleanup_free_ char *json = result_to_json(&res);
	result_free(&res);
	printf("%s\n", json ? json : "");
	return 1;
}

/* The task may hold a password or a private key. */
static void text_wipe(char *text, size_t len)
{
	if (text)
		explicit_bzero(text, len);
	free(text);
}

int cli_submit(const struct config *cfg, int argc, char **argv)
{
	struct cli_opts o;
	char *text = NULL;
	size_t len = 0;
	if (cli_parse("submit", argc, argv, "t", &o) < 0)
		return 2;
	int r = cli_read_task(o.task, &text, &len);
	if (r < 0) {
		fprintf(stderr, "kps-agent: cannot read task %s: %s\n", o.task ? o.task : "from stdin", strerror(-r));
		return 2;
	}
	if (one_line(text, len) < 0) {
		r = submit_local_refusal(text, len);
		text_wipe(text, len);
		return r;
	}
	_cleanup_close_ int fd = submit_connect(cfg->socket);
	if (fd < 0) {
		fprintf(stderr, "kps-agent: submit: no daemon answers on %s: %s\n",
			cfg->socket[0] ? cfg->socket : "([channel] socket is empty)", strerror(-fd));
		text_wipe(text, len);
		return 2;
	}
	r = write_all(fd, text, len);
	if (r == 0)
		r = write_all(fd, "\n", 1);
	text_wipe(text, len);
	_cleanup_buf_ struct buf answer = { 0 };
	struct result res;
	result_init(&res);
	if (r == 0)
		r = read_line(fd, &answer);
	if (r == 0)
		r = result_from_json(answer.data, answer.len, &res);
	if (r < 0) {
		fprintf(stderr, "kps-agent: submit: the daemon gave no result: %s\n", strerror(-r));
		return 2;
	}
	int code = res.code == ERR_NONE ? 0 : 1;
	result_free(&res);
	if (printf("%s\n", answer.data) < 0 || fflush(stdout) != 0)
		return 2;
	return code;
}

/* -- list -------------------------------------------------------------- */

static void format_time(int64_t t, char *buf, size_t size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	if (!t || !gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, size, "-");
}

static int list_json(const struct managed_entry *v, size_t n)
{
	_cleanup_cjson_ cJSON *arr = cJSON_CreateArray();
	char when[32];
	for (size_t i = 0; arr && i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		format_time(v[i].e.expires, when, sizeof(when));
		if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "user", v[i].user) ||
		    !cJSON_AddStringToObject(o, "path", v[i].path) ||
		    !cJSON_AddStringToObject(o, "keypair_name", v[i].e.keypair) ||
		    !cJSON_AddStringToObject(o, "fingerprint", v[i].e.fingerprint) ||
		    !cJSON_AddStringToObject(o, "task_id", v[i].e.task_id) ||
		    !(v[i].e.expires ? cJSON_AddStringToObject(o, "expires_at", when) : cJSON_AddNullToObject(o, "expires_at")))
			return 2;
	}
	_cleanup_free_ char *s = arr ? cJSON_PrintUnformatted(arr) : NULL;
	return s && printf("%s\n", s) >= 0 ? 0 : 2;
}

static int width(int w, const char *s)
{
	return (int)strlen(s) > w ? (int)strlen(s) : w;
}

static int list_table(const struct managed_entry *v, size_t n)
{
	int w[5] = { 4, 7, 11, 10, 4 };	/* USER KEYPAIR FINGERPRINT EXPIRES_AT TASK */
	char when[32];
	/* One entry a line for scripts; a header for people at a terminal. */
	bool tty = isatty(STDOUT_FILENO);
	if (n == 0)
		return tty && printf("no managed entries\n") < 0 ? 2 : 0;
	for (size_t i = 0; i < n; i++) {
		format_time(v[i].e.expires, when, sizeof(when));
		w[0] = width(w[0], v[i].user);
		w[1] = width(w[1], v[i].e.keypair);
		w[2] = width(w[2], v[i].e.fingerprint);
		w[3] = width(w[3], when);
		w[4] = width(w[4], v[i].e.task_id);
	}
	if (tty)
		printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], "USER", w[1], "KEYPAIR", w[2], "FINGERPRINT", w[3],
		       "EXPIRES_AT", w[4], "TASK", "PATH");
	for (size_t i = 0; i < n; i++) {
		format_time(v[i].e.expires, when, sizeof(when));
		printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", w[0], v[i].user, w[1], v[i].e.keypair, w[2],
		       v[i].e.fingerprint, w[3], when, w[4], v[i].e.task_id, v[i].path);
	}
	return fflush(stdout) == 0 ? 0 : 2;
}

int cli_list(const struct config *cfg, int argc, char **argv)
{
	struct cli_opts o;
	struct managed_entry *v = NULL;
	size_t n = 0;
	if (cli_parse("list", argc, argv, "uj", &o) < 0)
		return 2;
	if (o.user && (!str_is_token(o.user, USER_NAME_MAX) || o.user[0] == '-' || o.user[0] == '.')) {
		fprintf(stderr, "kps-agent: list: --user needs a user name\n");
		return 2;
	}
	int r = managed_list(cfg, o.user, &v, &n);
	if (r < 0) {
		fprintf(stderr, "kps-agent: list: %s: %s\n", cfg->state_dir, strerror(-r));
		return 2;
	}
	r = o.json ? list_json(v, n) : list_table(v, n);
	managed_entries_free(v, n);
	return r;
}

/* -- status ------------------------------------------------------------ */

/* The daemon's pid while one holds the lock; 0 when none runs. */
static long daemon_pid(const struct config *cfg)
{
	char path[CONFIG_PATH_MAX + 32], buf[32] = "";
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, DAEMON_LOCK);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0)
		return 0;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid = n > 0 ? strtol(buf, NULL, 10) : 0;
	return pid > 0 ? pid : -1;
}

/* Files named *.json in state_dir/sub: how many, and the newest. */
static int scan_results(const struct config *cfg, const char *sub, size_t *count, char **newest)
{
	char path[CONFIG_PATH_MAX + 32];
	struct timespec best = { 0, 0 };
	*count = 0;
	*newest = NULL;
	snprintf(path, sizeof(path), "%s/%s", cfg->state_dir, sub);
	DIR *d = opendir(path);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	for (struct dirent *e; (e = readdir(d));) {
		size_t len = strlen(e->d_name);
		struct stat st;
		if (len <= 5 || !streq(e->d_name + len - 5, ".json") ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		(*count)++;
		if (st.st_mtim.tv_sec > best.tv_sec ||
		    (st.st_mtim.tv_sec == best.tv_sec && st.st_mtim.tv_nsec > best.tv_nsec)) {
			best = st.st_mtim;
			free(*newest);
			*newest = strdup(e->d_name);
		}
	}
	closedir(d);
	return 0;
}

static cJSON *last_result(const struct config *cfg)
{
	size_t n;
	_cleanup_free_ char *name = NULL;
	char path[CONFIG_PATH_MAX + 128], buf[65536];
	if (scan_results(cfg, "results", &n, &name) < 0 || !name)
		return NULL;
	snprintf(path, sizeof(path), "%s/results/%s", cfg->state_dir, name);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	ssize_t len = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (len <= 0)
		return NULL;
	cJSON *o = cJSON_ParseWithLength(buf, (size_t)len);
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		return NULL;
	}
	cJSON_DeleteItemFromObjectCaseSensitive(o, "hold_until");	/* the journal's, not the result's */
	return o;
}

struct status {
	long pid;
	size_t pending;
	cJSON *last;	/* NULL: none */
	bool signed_only;
};

static int status_json(const struct config *cfg, const struct status *s)
{
	_cleanup_cjson_ cJSON *o = cJSON_CreateObject();
	_cleanup_free_ char *sid = config_server_id(cfg);
	cJSON *src = o ? cJSON_AddArrayToObject(o, "sources") : NULL;
	cJSON *addr = o ? cJSON_AddObjectToObject(o, "source_addresses") : NULL;
	bool ok = src && addr;
	if (!ok)
		return 2;
	const struct {
		const char *name, *value;
	} sources[] = { { "control_plane", cfg->url }, { "socket", cfg->socket }, { "virtio", cfg->device } };
	for (size_t i = 0; i < ELEMENTSOF(sources); i++)
		if (sources[i].value[0]) {
			ok &= cJSON_AddItemToArray(src, cJSON_CreateString(sources[i].name));
			ok &= cJSON_AddStringToObject(addr, sources[i].name, sources[i].value) != NULL;
		}
	ok &= cJSON_AddBoolToObject(o, "running", s->pid != 0) != NULL;
	ok &= (s->pid > 0 ? cJSON_AddNumberToObject(o, "pid", (double)s->pid) : cJSON_AddNullToObject(o, "pid")) != NULL;
	ok &= (sid ? cJSON_AddStringToObject(o, "server_id", sid) : cJSON_AddNullToObject(o, "server_id")) != NULL;
	ok &= cJSON_AddBoolToObject(o, "signed_tasks_only", s->signed_only) != NULL;
	ok &= cJSON_AddNumberToObject(o, "pending_results", (double)s->pending) != NULL;
	cJSON *last = s->last ? cJSON_Duplicate(s->last, true) : cJSON_CreateNull();
	ok &= last && cJSON_AddItemToObject(o, "last_result", last);
	_cleanup_free_ char *text = ok ? cJSON_PrintUnformatted(o) : NULL;
	return text && printf("%s\n", text) >= 0 ? 0 : 2;
}

static const char *json_str(const cJSON *o, const char *name)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(j) ? j->valuestring : "";
}

static int status_table(const struct config *cfg, const struct status *s)
{
	_cleanup_free_ char *sid = config_server_id(cfg);
	printf("%-16s %s", "running", s->pid ? "yes" : "no");
	if (s->pid > 0)
		printf(" (pid %ld)", s->pid);
	printf("\n%-16s %s\n", "server id", sid ? sid : "unknown");
	printf("%-16s control plane %s, socket %s, virtio %s\n", "sources", cfg->url[0] ? cfg->url : "off",
	       cfg->socket[0] ? cfg->socket : "off", cfg->device[0] ? cfg->device : "off");
	printf("%-16s %s\n", "signed tasks", s->signed_only ? "required (verify_key)" : "not required");
	printf("%-16s %zu\n", "pending results", s->pending);
	if (!s->last)
		printf("%-16s none\n", "last result");
	else
		printf("%-16s %s %s%s%s\n", "last result", json_str(s->last, "task_id"), json_str(s->last, "status"),
		       json_str(s->last, "error_code")[0] ? " " : "", json_str(s->last, "error_code"));
	return fflush(stdout) == 0 ? 0 : 2;
}

int cli_status(const struct config *cfg, int argc, char **argv)
{
	struct cli_opts o;
	_cleanup_free_ char *newest = NULL;
	if (cli_parse("status", argc, argv, "j", &o) < 0)
		return 2;
	struct status s = { .pid = daemon_pid(cfg), .signed_only = cfg->verify_keys.n > 0 };
	if (scan_results(cfg, "outbox", &s.pending, &newest) < 0)
		s.pending = 0;
	s.last = last_result(cfg);
	int r = o.json ? status_json(cfg, &s) : status_table(cfg, &s);
	cJSON_Delete(s.last);
	return r;
}
