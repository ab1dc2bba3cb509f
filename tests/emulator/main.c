/* kps-control-plane: the command line, the one libevent loop, and an
 * orderly exit (0) on SIGTERM or SIGINT. Nothing is logged per request:
 * harnesses often leave stderr on a pipe they never read. */
#include <arpa/inet.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/socket.h>

#include "emulator.h"

#define TOKEN_MAX 4096

struct emulator emu;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: kps-control-plane --listen HOST:PORT --agent-token TOKEN\n"
		"                         [--api-token TOKEN] [--huawei-aksk AK:SK] [--tencent-secret ID:KEY]\n"
		"                         [--fail-results N] [--delay-ms N] [--redeliver-ms N] [--sign-key FILE]\n"
		"\n"
		"  --listen HOST:PORT   address to serve on; PORT 0 picks a free port\n"
		"  --agent-token TOKEN  bearer token the agent must carry on /v1\n"
		"  --api-token TOKEN    Huawei X-Auth-Token\n"
		"  --huawei-aksk AK:SK  Huawei AK/SK signing (SDK-HMAC-SHA256, X-Sdk-Date)\n"
		"  --tencent-secret ID:KEY\n"
		"                       Tencent SecretId and SecretKey: API 3.0 (TC3-HMAC-SHA256)\n"
		"                       and the old API's Signature parameter\n"
		"  (at least one of --api-token, --huawei-aksk, --tencent-secret)\n"
		"  --fail-results N     answer the first N result POSTs 503, storing nothing\n"
		"  --delay-ms N         hold every request N ms before handling it (0-%d)\n"
		"  --redeliver-ms N     hand a RUNNING task out again after N ms without a\n"
		"                       result (default %d)\n"
		"  --sign-key FILE      hand every task out signed (CONTRACT 8) with this\n"
		"                       OpenSSH ed25519 private key (ssh-keygen -t ed25519)\n",
		DELAY_MAX_MS, REDELIVER_MS_DEFAULT);
}

static bool token_valid(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= TOKEN_MAX && !str_has_ctrl(s, n) && !strchr(s, ' ');
}

/* "ID:SECRET" into two copies; the secret is wiped from argv, so that
 * it is not left in /proc/PID/cmdline. */
static int parse_pair(char *arg, char **id, char **secret)
{
	char *colon = strchr(arg, ':');
	if (!colon || colon == arg || !colon[1])
		return -EINVAL;
	*colon = '\0';
	bool ok = token_valid(arg) && token_valid(colon + 1);
	free(*id);
	if (*secret)
		explicit_bzero(*secret, strlen(*secret));
	free(*secret);
	*id = strdup(arg);
	*secret = strdup(colon + 1);
	explicit_bzero(colon + 1, strlen(colon + 1));
	*colon = ':';
	if (!*id || !*secret)
		return -ENOMEM;
	return ok ? 0 : -EINVAL;
}

static void free_credentials(struct options *o)
{
	free(o->huawei_ak);
	free(o->tencent_id);
	if (o->huawei_sk)
		explicit_bzero(o->huawei_sk, strlen(o->huawei_sk));
	if (o->tencent_key)
		explicit_bzero(o->tencent_key, strlen(o->tencent_key));
	free(o->huawei_sk);
	free(o->tencent_key);
}

/* "127.0.0.1:8080" or "[::1]:8080". */
static int parse_listen(const char *s, char **host, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	unsigned long p;
	if (!colon || colon == s || !http_parse_ulong(colon + 1, 65535, &p))
		return -EINVAL;
	const char *h = s;
	size_t n = (size_t)(colon - s);
	if (h[0] == '[') {
		if (n < 3 || h[n - 1] != ']')
			return -EINVAL;
		h++;
		n -= 2;
	}
	*host = strndup(h, n);
	if (!*host)
		return -ENOMEM;
	*port = (uint16_t)p;
	return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "api-token", required_argument, NULL, 'a' },
		{ "agent-token", required_argument, NULL, 't' },
		{ "huawei-aksk", required_argument, NULL, 'H' },
		{ "tencent-secret", required_argument, NULL, 'T' },
		{ "fail-results", required_argument, NULL, 'f' },
		{ "delay-ms", required_argument, NULL, 'd' },
		{ "redeliver-ms", required_argument, NULL, 'r' },
		{ "sign-key", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	unsigned long v;
	int c;
	*o = (struct options){ .redeliver_ms = REDELIVER_MS_DEFAULT };
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen = optarg;
			break;
		case 'a':
			o->api_token = optarg;
			break;
		case 't':
			o->agent_token = optarg;
			break;
		case 'H':
			if (parse_pair(optarg, &o->huawei_ak, &o->huawei_sk) < 0)
				return -EINVAL;
			break;
		case 'T':
			if (parse_pair(optarg, &o->tencent_id, &o->tencent_key) < 0)
				return -EINVAL;
			break;
		case 'f':
			if (!http_parse_ulong(optarg, ULONG_MAX, &o->fail_results))
				return -EINVAL;
			break;
		case 'd':
			if (!http_parse_ulong(optarg, DELAY_MAX_MS, &v))
				return -EINVAL;
			o->delay_ms = (unsigned)v;
			break;
		case 'r':
			if (!http_parse_ulong(optarg, 24UL * 3600 * 1000, &v))
				return -EINVAL;
			o->redeliver_ms = (unsigned)v;
			break;
		case 's':
			if (tasksign_load(optarg) < 0) {
				fprintf(stderr, "kps-control-plane: --sign-key %s: not an unencrypted OpenSSH ed25519 private key\n",
					optarg);
				return -EINVAL;
			}
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			return -EINVAL;
		}
	}
	if (optind != argc || !o->listen || !o->agent_token || !token_valid(o->agent_token) ||
	    (o->api_token && !token_valid(o->api_token)) || (!o->api_token && !o->huawei_ak && !o->tencent_id))
		return -EINVAL;
	return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	event_base_loopexit(emu.base, NULL);
}

static int bound_port(struct evhttp_bound_socket *bound, uint16_t *port)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		*port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	else
		return -EAFNOSUPPORT;
	return 0;
}

static int serve(const char *host, uint16_t port)
{
	emu.http = evhttp_new(emu.base);
	if (!emu.http)
		return -ENOMEM;
	evhttp_set_max_body_size(emu.http, BODY_MAX);
	evhttp_set_max_headers_size(emu.http, HEADERS_MAX);
	/* Past the limit, read the rest and answer 413 rather than reset a
	 * client still sending. */
	evhttp_set_flags(emu.http, EVHTTP_SERVER_LINGERING_CLOSE);
	/* Idle and half-sent requests go after a while; a held request is
	 * answered well before: the longest poll plus the delay. */
	evhttp_set_timeout(emu.http, POLL_WAIT_MAX_S + DELAY_MAX_MS / 1000 + 60);
	evhttp_set_gencb(emu.http, http_request_cb, NULL);
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(emu.http, host, port);
	if (!bound) {
		fprintf(stderr, "kps-control-plane: cannot listen on %s port %u\n", host, port);
		return -EADDRNOTAVAIL;
	}
	int r = bound_port(bound, &port);
	if (r < 0) {
		fprintf(stderr, "kps-control-plane: cannot read the bound port: %s\n", strerror(-r));
		return r;
	}
	if (strchr(host, ':'))
		printf("listening on [%s]:%u\n", host, port);
	else
		printf("listening on %s:%u\n", host, port);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	_cleanup_free_ char *host = NULL;
	uint16_t port = 0;
	if (parse_options(argc, argv, &emu.opt) < 0 || parse_listen(emu.opt.listen, &host, &port) < 0) {
		free_credentials(&emu.opt);
		usage(stderr);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	emu.base = event_base_new();
	struct event *sigterm = emu.base ? evsignal_new(emu.base, SIGTERM, on_signal, NULL) : NULL;
	struct event *sigint = emu.base ? evsignal_new(emu.base, SIGINT, on_signal, NULL) : NULL;
	int r = sigterm && sigint && store_init() == 0 ? 0 : -ENOMEM;
	if (r == 0 && (evsignal_add(sigterm, NULL) < 0 || evsignal_add(sigint, NULL) < 0))
		r = -EIO;
	if (r == 0)
		r = serve(host, port);
	if (r == 0 && event_base_dispatch(emu.base) < 0)
		r = -EIO;

	hold_drop_all();
	if (emu.http)
		evhttp_free(emu.http);
	store_free();
	tasksign_free();
	free_credentials(&emu.opt);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (emu.base)
		event_base_free(emu.base);
	if (r < 0 && r != -EADDRNOTAVAIL)
		fprintf(stderr, "kps-control-plane: %s\n", strerror(-r));
	return r < 0 ? 1 : 0;
}
