/* The clouds' request signatures, checked as the clouds check them, so
 * that their real SDKs work against the emulator and a wrong key does not.
 *
 * Huawei (APIG "SDK-HMAC-SHA256", what its SDKs' AKSKSigner sends):
 *   canonical = METHOD \n URI/ \n sorted query \n name:value\n... \n
 *               signed-names \n hex(sha256(body))
 *   signature = hex(HMAC-SHA256(SK, "SDK-HMAC-SHA256\n" X-Sdk-Date "\n"
 *               hex(sha256(canonical))))
 * Tencent API 3.0 ("TC3-HMAC-SHA256"):
 *   canonical = METHOD \n / \n query \n name:lower(value)\n... \n
 *               signed-names \n hex(sha256(body))
 *   key       = HMAC(HMAC(HMAC("TC3" SecretKey, date), service), "tc3_request")
 *   signature = hex(HMAC(key, "TC3-HMAC-SHA256\n" ts "\n" date/service/
 *               tc3_request "\n" hex(sha256(canonical))))
 * Tencent's old API: base64(HMAC-SHA1 or -SHA256(SecretKey, METHOD host
 *   path "?" k=v&... sorted, values as sent before URL-encoding)).
 *
 * The host a client signs is the one it was pointed at: Tencent's SDKs
 * sign it without the port the Host header carries, Huawei's with it, so
 * both forms are accepted. Secrets are compared in constant time and no
 * expected signature leaves this file. */
#include <ctype.h>
#include <strings.h>
#include <time.h>

#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "emulator.h"

#define SIGNED_HEADERS_MAX 32
#define SIGN_FIELD_MAX 1024	/* one part of an Authorization header */

static void sign_hex(const unsigned char *d, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[2 * n] = '\0';
}

static void sign_sha256_hex(const void *data, size_t len, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
	unsigned char d[SHA256_DIGEST_LENGTH];
	SHA256(data, len, d);
	sign_hex(d, sizeof(d), out);
}

static int sign_hmac(const EVP_MD *md, const void *key, size_t klen, const void *msg, size_t mlen,
		     unsigned char out[EVP_MAX_MD_SIZE], unsigned *olen)
{
	if (klen > INT32_MAX || !HMAC(md, key, (int)klen, msg, mlen, out, olen))
		return -ENOMEM;
	return 0;
}

/* Constant time over the expected length; got may be any length. */
static bool sign_equal(const char *got, const char *want)
{
	size_t n = strlen(want);
	return strlen(got) == n && CRYPTO_memcmp(got, want, n) == 0;
}

static const char *sign_header(struct evhttp_request *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

/* "Key=value" out of a "Key=a, Key2=b, ..." Authorization header. */
static bool sign_field(const char *auth, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	for (const char *p = auth; *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		while (n > 0 && p[n - 1] == ' ')
			n--;
		if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			if (n - klen - 1 >= outlen)
				return false;
			memcpy(out, p + klen + 1, n - klen - 1);
			out[n - klen - 1] = '\0';
			return out[0] != '\0';
		}
		p += n;
		while (*p && *p != ',')
			p++;
	}
	return false;
}

/* "a;b;c", lowercase, each a header the request carries, in order. */
static int sign_split_names(const char *list, char names[SIGNED_HEADERS_MAX][128], size_t *n)
{
	*n = 0;
	for (const char *p = list; *p;) {
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		if (len == 0 || len >= 128 || *n >= SIGNED_HEADERS_MAX)
			return -EINVAL;
		for (size_t i = 0; i < len; i++)
			if (!isgraph((unsigned char)p[i]) || isupper((unsigned char)p[i]) || p[i] == ':')
				return -EINVAL;
		memcpy(names[*n], p, len);
		names[(*n)++][len] = '\0';
		p += len + (semi ? 1 : 0);
		if (semi && !*p)
			return -EINVAL;
	}
	return *n > 0 ? 0 : -EINVAL;
}

static bool sign_names_have(char names[SIGNED_HEADERS_MAX][128], size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (streq(names[i], name))
			return true;
	return false;
}

/* name:value\n for each signed header, the value trimmed (and lowercased
 * for Tencent); host_no_port: the Host header without its ":port". */
static int sign_canonical_headers(struct evhttp_request *req, char names[SIGNED_HEADERS_MAX][128], size_t n,
				  bool lower, bool host_no_port, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		const char *v = sign_header(req, names[i]);
		if (!v)
			return -ENOENT;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t len = strlen(v);
		while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
			len--;
		if (host_no_port && streq(names[i], "host")) {
			const char *colon = memchr(v, ':', len);
			if (colon && v[0] != '[')
				len = (size_t)(colon - v);
		}
		if (buf_printf(out, "%s:", names[i]) < 0 || buf_append(out, v, len) < 0 || buf_puts(out, "\n") < 0)
			return -ENOMEM;
		if (lower)
			for (size_t j = out->len - len - 1; j < out->len; j++)
				out->data[j] = (char)tolower((unsigned char)out->data[j]);
	}
	return 0;
}

static int sign_body_hash(struct evhttp_request *req, char out[2 * SHA256_DIGEST_LENGTH + 1])
{
	_cleanup_(buf_wipe) struct buf body = { 0 };
	int r = http_body_peek(req, &body);
	if (r < 0)
		return r;
	sign_sha256_hex(body.data ? body.data : "", body.len, out);
	return 0;
}

/* RFC 3986 unreserved characters stay, everything else is %XX, as the
 * signers encode path segments and query parameters. */
static int sign_uri_encode(struct buf *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		int r = isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ? buf_append(out, s + i, 1)
										 : buf_printf(out, "%%%02X", c);
		if (r < 0)
			return r;
	}
	return 0;
}

static const char *sign_path(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	return path && *path ? path : "/";
}

static const char *sign_method(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "OTHER";
	}
}

/* ---- Huawei ------------------------------------------------------------ */

struct param {
	const char *key;
	const char *value;
};

static int param_cmp(const void *a, const void *b)
{
	const struct param *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->value, y->value);
}

/* Each path segment decoded and encoded again, with a trailing '/'. */
static int huawei_canonical_uri(const char *path, struct buf *out)
{
	const char *p = path;
	for (;;) {
		size_t n = strcspn(p, "/");
		_cleanup_free_ char *raw = strndup(p, n);
		size_t dlen = 0;
		_cleanup_free_ char *seg = raw ? evhttp_uridecode(raw, 0, &dlen) : NULL;
		if (!seg || sign_uri_encode(out, seg, dlen) < 0)
			return -ENOMEM;
		if (!p[n])
			break;
		if (buf_puts(out, "/") < 0)
			return -ENOMEM;
		p += n + 1;
	}
	if ((out->len == 0 || out->data[out->len - 1] != '/') && buf_puts(out, "/") < 0)
		return -ENOMEM;
	return 0;
}

static int huawei_canonical_query(struct evhttp_request *req, struct buf *out)
{
	struct evkeyvalq q;
	int r = http_query(req, &q);
	struct param params[256];
	size_t n = 0;
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &q, next) {
		if (n >= ELEMENTSOF(params)) {
			r = -EINVAL;
			break;
		}
		params[n++] = (struct param){ kv->key, kv->value };
	}
	qsort(params, n, sizeof(params[0]), param_cmp);
	for (size_t i = 0; r == 0 && i < n; i++)
		if ((i && buf_puts(out, "&") < 0) || sign_uri_encode(out, params[i].key, strlen(params[i].key)) < 0 ||
		    buf_puts(out, "=") < 0 || sign_uri_encode(out, params[i].value, strlen(params[i].value)) < 0)
			r = -ENOMEM;
	evhttp_clear_headers(&q);
	return r;
}

/* "20260102T030405Z" as seconds since the epoch. */
static int huawei_parse_date(const char *s, time_t *ret)
{
	struct tm tm = { 0 };
	const char *end = s ? strptime(s, "%Y%m%dT%H%M%SZ", &tm) : NULL;
	if (!end || *end || strlen(s) != 16)
		return -EINVAL;
	*ret = timegm(&tm);
	return *ret == (time_t)-1 ? -EINVAL : 0;
}

static int huawei_expected(struct evhttp_request *req, char names[SIGNED_HEADERS_MAX][128], size_t n,
			   const char *names_text, const char *date, bool host_no_port, char *hex)
{
	_cleanup_buf_ struct buf c = { 0 };
	char body[2 * SHA256_DIGEST_LENGTH + 1], creq[2 * SHA256_DIGEST_LENGTH + 1];
	/* X-Sdk-Content-Sha256 (signed, then) stands for the body's hash,
	 * "UNSIGNED-PAYLOAD" included, as the signer does. */
	const char *content = sign_header(req, "X-Sdk-Content-Sha256");
	int r = content && sign_names_have(names, n, "x-sdk-content-sha256") ? 0 : sign_body_hash(req, body);
	if (r == 0 && buf_printf(&c, "%s\n", sign_method(req)) < 0)
		r = -ENOMEM;
	if (r == 0)
		r = huawei_canonical_uri(sign_path(req), &c);
	if (r == 0)
		r = buf_puts(&c, "\n");
	if (r == 0)
		r = huawei_canonical_query(req, &c);
	if (r == 0)
		r = buf_puts(&c, "\n");
	if (r == 0)
		r = sign_canonical_headers(req, names, n, false, host_no_port, &c);
	if (r == 0)
		r = buf_printf(&c, "\n%s\n%s", names_text, content && sign_names_have(names, n, "x-sdk-content-sha256")
								? content : body);
	if (r < 0)
		return r;
	sign_sha256_hex(c.data, c.len, creq);
	_cleanup_buf_ struct buf sts = { 0 };
	if (buf_printf(&sts, "SDK-HMAC-SHA256\n%s\n%s", date, creq) < 0)
		return -ENOMEM;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned len = 0;
	r = sign_hmac(EVP_sha256(), emu.opt.huawei_sk, strlen(emu.opt.huawei_sk), sts.data, sts.len, mac, &len);
	if (r == 0)
		sign_hex(mac, len, hex);
	explicit_bzero(mac, sizeof(mac));
	return r;
}

int sign_huawei(struct evhttp_request *req, struct api_fault *f)
{
	const char *auth = sign_header(req, "Authorization");
	const char *prefix = "SDK-HMAC-SHA256 ";
	char access[SIGN_FIELD_MAX], names_text[SIGN_FIELD_MAX], sig[SIGN_FIELD_MAX];
	char names[SIGNED_HEADERS_MAX][128];
	size_t n = 0;
	if (!auth || strncmp(auth, prefix, strlen(prefix)) != 0 ||
	    !sign_field(auth + strlen(prefix), "Access", access, sizeof(access)) ||
	    !sign_field(auth + strlen(prefix), "SignedHeaders", names_text, sizeof(names_text)) ||
	    !sign_field(auth + strlen(prefix), "Signature", sig, sizeof(sig)) ||
	    sign_split_names(names_text, names, &n) < 0 || !sign_names_have(names, n, "host"))
		return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: the Authorization "
				 "header is not SDK-HMAC-SHA256 Access=..., SignedHeaders=...;host;..., Signature=...");
	const char *date = sign_header(req, "X-Sdk-Date");
	time_t t;
	if (huawei_parse_date(date, &t) < 0)
		return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: X-Sdk-Date must be "
				 "YYYYMMDDTHHMMSSZ");
	time_t now = time(NULL);
	if (t < now - HUAWEI_DATE_SKEW_S || t > now + HUAWEI_DATE_SKEW_S)
		return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: X-Sdk-Date %s is "
				 "more than 15 minutes from the server's time", date);
	if (!emu.opt.huawei_ak || !sign_equal(access, emu.opt.huawei_ak))
		return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: the AK is unknown");
	for (int host_no_port = 0; host_no_port < 2; host_no_port++) {
		char want[2 * EVP_MAX_MD_SIZE + 1];
		int r = huawei_expected(req, names, n, names_text, date, host_no_port, want);
		if (r == -ENOENT)
			return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: a signed "
					 "header is missing");
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: the request "
					 "cannot be signed (more than 256 query parameters?)");
		bool ok = sign_equal(sig, want);
		explicit_bzero(want, sizeof(want));
		if (ok)
			return 0;
	}
	return api_fault(f, KPS_UNAUTHORIZED, "Incorrect IAM authentication information: verify aksk signature fail");
}

/* ---- Tencent API 3.0 --------------------------------------------------- */

/* The TC3 signing key for date and service, from SecretKey. */
static int tc3_key(const char *date, const char *service, unsigned char key[EVP_MAX_MD_SIZE], unsigned *klen)
{
	_cleanup_(buf_wipe) struct buf k = { 0 };
	if (buf_printf(&k, "TC3%s", emu.opt.tencent_key) < 0)
		return -ENOMEM;
	unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
	unsigned la = 0, lb = 0;
	int r = sign_hmac(EVP_sha256(), k.data, k.len, date, strlen(date), a, &la);
	if (r == 0)
		r = sign_hmac(EVP_sha256(), a, la, service, strlen(service), b, &lb);
	if (r == 0)
		r = sign_hmac(EVP_sha256(), b, lb, "tc3_request", strlen("tc3_request"), key, klen);
	explicit_bzero(a, sizeof(a));
	explicit_bzero(b, sizeof(b));
	return r;
}

static int tc3_expected(struct evhttp_request *req, char names[SIGNED_HEADERS_MAX][128], size_t n,
			const char *names_text, const char *ts, const char *scope, const char *date,
			const char *service, bool host_no_port, char *hex)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	char body[2 * SHA256_DIGEST_LENGTH + 1], creq[2 * SHA256_DIGEST_LENGTH + 1];
	_cleanup_buf_ struct buf c = { 0 };
	int r = sign_body_hash(req, body);
	if (r == 0 && buf_printf(&c, "%s\n%s\n%s\n", sign_method(req), sign_path(req), query ? query : "") < 0)
		r = -ENOMEM;
	if (r == 0)
		r = sign_canonical_headers(req, names, n, true, host_no_port, &c);
	if (r == 0 && buf_printf(&c, "\n%s\n%s", names_text, body) < 0)
		r = -ENOMEM;
	if (r < 0)
		return r;
	sign_sha256_hex(c.data, c.len, creq);
	_cleanup_buf_ struct buf sts = { 0 };
	if (buf_printf(&sts, "TC3-HMAC-SHA256\n%s\n%s\n%s", ts, scope, creq) < 0)
		return -ENOMEM;
	unsigned char key[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
	unsigned klen = 0, mlen = 0;
	r = tc3_key(date, service, key, &klen);
	if (r == 0)
		r = sign_hmac(EVP_sha256(), key, klen, sts.data, sts.len, mac, &mlen);
	if (r == 0)
		sign_hex(mac, mlen, hex);
	explicit_bzero(key, sizeof(key));
	explicit_bzero(mac, sizeof(mac));
	return r;
}

/* The service a client signs for is the first label of the host it was
 * pointed at (cvm.tencentcloudapi.com: "cvm"). */
static bool tc3_service_ok(struct evhttp_request *req, const char *service)
{
	if (streq(service, "cvm"))
		return true;
	const char *host = sign_header(req, "Host");
	if (!host)
		return false;
	size_t n = strcspn(host, ".:");
	return n == strlen(service) && strncmp(host, service, n) == 0;
}

static int tencent_timestamp(const char *s, const char *what, struct api_fault *f)
{
	unsigned long ts;
	if (!s)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.", what);
	if (!http_parse_ulong(s, 4102444800UL, &ts))
		return api_fault(f, "InvalidParameter", "%s must be a Unix time in seconds", what);
	int64_t now = (int64_t)time(NULL);
	if ((int64_t)ts < now - TENCENT_SKEW_S || (int64_t)ts > now + TENCENT_SKEW_S)
		return api_fault(f, "AuthFailure.SignatureExpire",
				 "The signature expired: %s %lu is more than 5 minutes from the server's time %lld", what,
				 ts, (long long)now);
	return 0;
}

int sign_tencent_tc3(struct evhttp_request *req, struct api_fault *f)
{
	const char *auth = sign_header(req, "Authorization");
	const char *prefix = "TC3-HMAC-SHA256 ";
	char cred[SIGN_FIELD_MAX], names_text[SIGN_FIELD_MAX], sig[SIGN_FIELD_MAX];
	char names[SIGNED_HEADERS_MAX][128];
	size_t n = 0;
	if (!auth || strncmp(auth, prefix, strlen(prefix)) != 0 ||
	    !sign_field(auth + strlen(prefix), "Credential", cred, sizeof(cred)) ||
	    !sign_field(auth + strlen(prefix), "SignedHeaders", names_text, sizeof(names_text)) ||
	    !sign_field(auth + strlen(prefix), "Signature", sig, sizeof(sig)) ||
	    sign_split_names(names_text, names, &n) < 0)
		return api_fault(f, "AuthFailure.InvalidAuthorization", "The Authorization header must be "
				 "TC3-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...");
	if (!sign_names_have(names, n, "host") || !sign_names_have(names, n, "content-type"))
		return api_fault(f, "AuthFailure.InvalidAuthorization", "SignedHeaders must include content-type and host");
	/* Credential=SecretId/YYYY-MM-DD/service/tc3_request */
	char *date = strchr(cred, '/');
	char *service = date ? strchr(date + 1, '/') : NULL;
	char *term = service ? strchr(service + 1, '/') : NULL;
	if (!term || !streq(term + 1, "tc3_request") || date == cred)
		return api_fault(f, "AuthFailure.InvalidAuthorization",
				 "Credential must be SecretId/YYYY-MM-DD/service/tc3_request");
	const char *ts = sign_header(req, "X-TC-Timestamp");
	int r = tencent_timestamp(ts, "X-TC-Timestamp", f);
	if (r < 0)
		return r;
	*date++ = '\0';
	*service++ = '\0';
	*term = '\0';
	if (!emu.opt.tencent_id || !sign_equal(cred, emu.opt.tencent_id))
		return api_fault(f, "AuthFailure.SecretIdNotFound", "The SecretId is not found.");
	char day[16], scope[SIGN_FIELD_MAX];
	time_t t = (time_t)strtoll(ts, NULL, 10);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(day, sizeof(day), "%Y-%m-%d", &tm) == 0)
		return api_fault(f, "InternalError", "cannot format the date");
	if (!streq(day, date))
		return api_fault(f, "AuthFailure.SignatureFailure", "The Credential date %.16s is not the UTC date of "
				 "X-TC-Timestamp (%s).", date, day);
	if (!tc3_service_ok(req, service))
		return api_fault(f, "AuthFailure.SignatureFailure", "The Credential service %.64s is not this endpoint's.",
				 service);
	snprintf(scope, sizeof(scope), "%s/%s/tc3_request", date, service);
	for (int host_no_port = 0; host_no_port < 2; host_no_port++) {
		char want[2 * EVP_MAX_MD_SIZE + 1];
		r = tc3_expected(req, names, n, names_text, ts, scope, date, service, host_no_port, want);
		if (r == -ENOENT)
			return api_fault(f, "AuthFailure.SignatureFailure", "A header named in SignedHeaders is missing.");
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return api_fault(f, "InvalidParameter", "the request body cannot be read");
		bool ok = sign_equal(sig, want);
		explicit_bzero(want, sizeof(want));
		if (ok)
			return 0;
	}
	return api_fault(f, "AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
			 "Please check your signature is correct.");
}

/* ---- Tencent's old API ------------------------------------------------- */

static int v1_expected(struct evhttp_request *req, const struct evkeyvalq *q, const EVP_MD *md, bool host_no_port,
		       struct buf *out)
{
	const char *host = sign_header(req, "Host");
	if (!host)
		return -ENOENT;
	size_t hlen = strlen(host);
	const char *colon = strchr(host, ':');
	if (host_no_port && colon && host[0] != '[')
		hlen = (size_t)(colon - host);
	struct param params[512];
	size_t n = 0;
	const struct evkeyval *kv;
	TAILQ_FOREACH(kv, q, next) {
		if (streq(kv->key, "Signature"))
			continue;
		if (n >= ELEMENTSOF(params))
			return -EINVAL;
		params[n++] = (struct param){ kv->key, kv->value };
	}
	qsort(params, n, sizeof(params[0]), param_cmp);
	_cleanup_(buf_wipe) struct buf s = { 0 };
	if (buf_printf(&s, "%s", sign_method(req)) < 0 || buf_append(&s, host, hlen) < 0 ||
	    buf_printf(&s, "%s?", sign_path(req)) < 0)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (buf_printf(&s, "%s%s=%s", i ? "&" : "", params[i].key, params[i].value) < 0)
			return -ENOMEM;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned mlen = 0;
	int r = sign_hmac(md, emu.opt.tencent_key, strlen(emu.opt.tencent_key), s.data, s.len, mac, &mlen);
	if (r < 0)
		return r;
	r = buf_reserve(out, 4 * ((mlen + 2) / 3) + 1);
	if (r == 0) {
		out->len = (size_t)EVP_EncodeBlock((unsigned char *)out->data, mac, (int)mlen);
		out->data[out->len] = '\0';
	}
	explicit_bzero(mac, sizeof(mac));
	return r;
}

int sign_tencent_v1(struct evhttp_request *req, const struct evkeyvalq *q, struct api_fault *f)
{
	const char *id = evhttp_find_header(q, "SecretId");
	const char *sig = evhttp_find_header(q, "Signature");
	const char *nonce = evhttp_find_header(q, "Nonce");
	const char *method = evhttp_find_header(q, "SignatureMethod");
	unsigned long v;
	if (!id || !sig)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `%s`.",
				 id ? "Signature" : "SecretId");
	int r = tencent_timestamp(evhttp_find_header(q, "Timestamp"), "Timestamp", f);
	if (r < 0)
		return r;
	if (!nonce)
		return api_fault(f, "MissingParameter", "The request is missing a required parameter `Nonce`.");
	if (!http_parse_ulong(nonce, UINT32_MAX, &v) || v == 0)
		return api_fault(f, "InvalidParameter", "Nonce must be a positive integer");
	const EVP_MD *md = !method || streq(method, "HmacSHA1") ? EVP_sha1() : streq(method, "HmacSHA256") ? EVP_sha256()
														: NULL;
	if (!md)
		return api_fault(f, "InvalidParameterValue", "SignatureMethod is HmacSHA1 or HmacSHA256");
	if (!emu.opt.tencent_id || !sign_equal(id, emu.opt.tencent_id))
		return api_fault(f, "AuthFailure.SecretIdNotFound", "The SecretId is not found.");
	for (int host_no_port = 0; host_no_port < 2; host_no_port++) {
		_cleanup_(buf_wipe) struct buf want = { 0 };
		r = v1_expected(req, q, md, host_no_port, &want);
		if (r == -ENOENT)
			return api_fault(f, "AuthFailure.SignatureFailure", "The request has no Host header to sign.");
		if (r == -EINVAL)
			return api_fault(f, "InvalidParameter", "too many parameters");
		if (r < 0)
			return r;
		if (sign_equal(sig, want.data))
			return 0;
	}
	return api_fault(f, "AuthFailure.SignatureFailure", "The provided credentials could not be validated. "
			 "Please check your signature is correct.");
}
