/* No TLS (cphttp.h): kps-agent-net, the network side for an http control
 * plane (or none), maps no OpenSSL. The monitor starts kps-agent-net-tls
 * for an https URL, so these answer only a URL the monitor would not give. */
#include "cphttp.h"
#include "log.h"

int cphttp_tls_ctx(const char *ca_file, SSL_CTX **ret)
{
	(void)ca_file;
	*ret = NULL;
	log_warnx("control plane: this network side has no TLS (kps-agent-net-tls has)");
	return -EPROTONOSUPPORT;
}

void cphttp_tls_free(SSL_CTX *ctx)
{
	(void)ctx;
}

struct bufferevent *cphttp_tls_bufferevent(struct cphttp_slot *s)
{
	(void)s;
	return NULL;
}

unsigned long cphttp_tls_error(struct bufferevent *bev)
{
	(void)bev;
	return 0;
}

void cphttp_tls_error_string(unsigned long e, char *buf, size_t size)
{
	(void)e;
	snprintf(buf, size, "no TLS");
}
