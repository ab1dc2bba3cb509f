/* TLS for the control plane's requests (cphttp.h), linked into
 * kps-agent-net-tls only: the network side for an https control plane.
 * For http, kps-agent-net links cpnotls.c and maps no OpenSSL. */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cphttp.h"
#include "log.h"

/* Keeps OpenSSL's verdict; only notes why, for the log line. */
static int verify_cb(int ok, X509_STORE_CTX *x)
{
	if (ok)
		return 1;
	SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct cphttp_slot *s = ssl ? SSL_get_app_data(ssl) : NULL;
	if (s && !s->tls_err[0])
		snprintf(s->tls_err, sizeof(s->tls_err), "TLS: certificate verification failed at depth %d: %s",
			 X509_STORE_CTX_get_error_depth(x), X509_verify_cert_error_string(X509_STORE_CTX_get_error(x)));
	return 0;
}

int cphttp_tls_ctx(const char *ca_file, SSL_CTX **ret)
{
	char err[CPHTTP_ERR_MAX];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A task may carry a password: OpenSSL wipes each record once it is
	 * read, rather than leave it in the buffer it frees. */
	SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
	/* Every certificate is read now: the network side opens no file
	 * later, so the system's directory of hashed names is no use there;
	 * its bundle file is. */
	const char *env = getenv(X509_get_default_cert_file_env());
	const char *bundle = env && *env ? env : X509_get_default_cert_file();
	int ok = ca_file && *ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
				     : SSL_CTX_load_verify_locations(ctx, bundle, NULL);
	if (ok == 1) {
		*ret = ctx;
		return 0;
	}
	ERR_error_string_n(ERR_get_error(), err, sizeof(err));
	ERR_clear_error();
	SSL_CTX_free(ctx);
	log_warnx("control plane: cannot load the CA %s%s: %s", ca_file && *ca_file ? "file " : "certificates",
		  ca_file && *ca_file ? ca_file : "", err);
	return -EINVAL;
}

void cphttp_tls_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

static SSL *slot_ssl(struct cphttp_slot *s)
{
	const struct cphttp_peer *p = s->peer;
	SSL *ssl = SSL_new(p->ssl_ctx);
	if (!ssl)
		return NULL;
	SSL_set_app_data(ssl, s);
	int ok;
	if (p->host_is_ip)
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), p->host);
	else
		ok = SSL_set_tlsext_host_name(ssl, p->host) && SSL_set1_host(ssl, p->host);
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	if (!ok) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

struct bufferevent *cphttp_tls_bufferevent(struct cphttp_slot *s)
{
	SSL *ssl = slot_ssl(s);
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(s->peer->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
								  BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	/* The body is delimited by Content-Length: a server that closes
	 * without close_notify loses nothing. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* The first error OpenSSL queued; small values are bare SSL_get_error()
 * codes (a socket error during the handshake), not OpenSSL errors. */
unsigned long cphttp_tls_error(struct bufferevent *bev)
{
	unsigned long tls = 0;
	for (unsigned long e; (e = bufferevent_get_openssl_error(bev));)
		if (!tls && ERR_GET_LIB(e) != 0)
			tls = e;
	return tls;
}

void cphttp_tls_error_string(unsigned long e, char *buf, size_t size)
{
	ERR_error_string_n(e, buf, size);
}
