/* SSH wire formats: base64 and the RFC 4251 readers over a bounded buffer.
 * pubkey.c (key blobs), signature.c (the verify key) and proofkey.c (the
 * head of an OpenSSH private key) all decode through here. */
#include "sshwire.h"

int sshwire_base64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '/')
		return c == '+' ? 62 : 63;
	return -1;
}

static size_t base64_pad(const char *s, size_t len)
{
	size_t pad = 0;
	while (pad < 2 && pad < len && s[len - 1 - pad] == '=')
		pad++;
	return pad;
}

bool sshwire_base64_valid(const char *s, size_t len)
{
	if (len == 0 || len % 4 != 0)
		return false;
	size_t pad = base64_pad(s, len);
	for (size_t i = 0; i < len - pad; i++)
		if (sshwire_base64_value(s[i]) < 0)
			return false;
	return true;
}

int sshwire_base64_decode(const char *s, size_t len, bool canonical, unsigned char *out, size_t *out_len)
{
	if (!sshwire_base64_valid(s, len))
		return -EINVAL;
	size_t pad = base64_pad(s, len), n = 0;
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < len - pad; i++) {
		acc = (acc << 6) | (uint32_t)sshwire_base64_value(s[i]);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	/* What is left is the padding's 2 or 4 bits. */
	if (canonical && (acc & ((1U << bits) - 1)) != 0)
		return -EINVAL;
	*out_len = n;
	return 0;
}

size_t sshwire_base64_prefix(const char *s, unsigned char *out, size_t max)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t n = 0;
	for (; *s && n < max; s++) {
		if (*s == '\n' || *s == '\r' || *s == ' ' || *s == '\t')
			continue;
		int v = sshwire_base64_value(*s);
		if (v < 0)
			break;
		acc = ((acc << 6) | (uint32_t)v) & 0xffffU;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

size_t sshwire_base64_encode_nopad(const unsigned char *p, size_t n, char *out)
{
	static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t take = n - i < 3 ? n - i : 3;
		/* cppcheck-suppress knownConditionTrueFalse ; n - i may be 1, 2 or more */
		if (take > 1)
			v |= (uint32_t)p[i + 1] << 8;
		/* cppcheck-suppress knownConditionTrueFalse */
		if (take > 2)
			v |= p[i + 2];
		for (size_t k = 0; k <= take; k++)
			out[o++] = alphabet[(v >> (18 - 6 * k)) & 0x3f];
	}
	out[o] = '\0';
	return o;
}

int sshwire_u32(struct sshwire *w, uint32_t *v)
{
	if (w->len < 4)
		return -EBADMSG;
	*v = (uint32_t)w->p[0] << 24 | (uint32_t)w->p[1] << 16 | (uint32_t)w->p[2] << 8 | w->p[3];
	w->p += 4;
	w->len -= 4;
	return 0;
}

int sshwire_string(struct sshwire *w, const unsigned char **s, size_t *len)
{
	struct sshwire at = *w;
	uint32_t n;
	if (sshwire_u32(&at, &n) < 0 || n > at.len)
		return -EBADMSG;
	*s = at.p;
	*len = n;
	w->p = at.p + n;
	w->len = at.len - n;
	return 0;
}

int sshwire_string_eq(struct sshwire *w, const char *want)
{
	const unsigned char *s;
	size_t n;
	if (sshwire_string(w, &s, &n) < 0 || n != strlen(want) || memcmp(s, want, n) != 0)
		return -EBADMSG;
	return 0;
}

int sshwire_mpint(struct sshwire *w, const unsigned char **s, size_t *len)
{
	int r = sshwire_string(w, s, len);
	while (r == 0 && *len > 0 && **s == 0) {
		(*s)++;
		(*len)--;
	}
	return r;
}

size_t sshwire_bits(const unsigned char *p, size_t len)
{
	if (len == 0)
		return 0;
	size_t bits = len * 8;
	for (unsigned char top = 0x80; top && !(*p & top); top >>= 1)
		bits--;
	return bits;
}

int sshwire_put_string(struct sshwire_out *o, const void *s, size_t len)
{
	if (len > UINT32_MAX || o->cap - o->n < 4 || o->cap - o->n - 4 < len)
		return -ENOBUFS;
	unsigned char *d = o->p + o->n;
	d[0] = (unsigned char)(len >> 24);
	d[1] = (unsigned char)(len >> 16);
	d[2] = (unsigned char)(len >> 8);
	d[3] = (unsigned char)len;
	if (len > 0)
		memcpy(d + 4, s, len);
	o->n += 4 + len;
	return 0;
}

int sshwire_put_mpint(struct sshwire_out *o, const unsigned char *s, size_t len)
{
	if (len == 0 || !(s[0] & 0x80))
		return sshwire_put_string(o, s, len);
	if (len + 1 > UINT32_MAX || o->cap - o->n < 5 || o->cap - o->n - 5 < len)
		return -ENOBUFS;
	unsigned char *d = o->p + o->n;
	size_t n = len + 1;
	d[0] = (unsigned char)(n >> 24);
	d[1] = (unsigned char)(n >> 16);
	d[2] = (unsigned char)(n >> 8);
	d[3] = (unsigned char)n;
	d[4] = 0;
	memcpy(d + 5, s, len);
	o->n += 4 + n;
	return 0;
}

bool sshwire_end(const struct sshwire *w)
{
	return w->len == 0;
}
