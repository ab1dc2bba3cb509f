/* SSH wire formats, read in one place: the base64 that carries a key blob
 * or a signature, and the RFC 4251 types inside a blob (uint32, string,
 * mpint) read from a bounded buffer. Every reader checks the length it is
 * told against what is left before it reads. Pure: no I/O, no library. */
#pragma once

#include "util.h"

/* A blob being read: p advances and len shrinks as fields are taken. */
struct sshwire {
	const unsigned char *p;
	size_t len;
};

/* The value of one base64 character, -1 outside the alphabet (padding
 * included). */
int sshwire_base64_value(char c);
/* Padded to a multiple of four, as ssh-keygen writes it: at most two '='
 * at the end, the alphabet before them. */
bool sshwire_base64_valid(const char *s, size_t len);
/* Decodes base64 that passes sshwire_base64_valid into out, which holds
 * len / 4 * 3 bytes. With canonical, the bits the padding leaves over must
 * be zero, so that each byte string has one text (a signature has one
 * form). 0 or -EINVAL. */
int sshwire_base64_decode(const char *s, size_t len, bool canonical, unsigned char *out, size_t *out_len);
/* Decodes at most max bytes from the start of NUL-terminated s, skipping
 * white space and stopping at the first character that is not base64:
 * a look at the head of a PEM body. Returns the bytes decoded. */
size_t sshwire_base64_prefix(const char *s, unsigned char *out, size_t max);
/* Unpadded base64 of n bytes into out (4 * ceil(n / 3) + 1 bytes), as
 * ssh-keygen prints a fingerprint. Returns the length written. */
size_t sshwire_base64_encode_nopad(const unsigned char *p, size_t n, char *out);

/* Each reader: 0, or -EBADMSG when the buffer ends first (nothing taken). */
int sshwire_u32(struct sshwire *w, uint32_t *v);
/* A string: uint32 length, then that many bytes (s points into the blob). */
int sshwire_string(struct sshwire *w, const unsigned char **s, size_t *len);
/* A string equal to want; -EBADMSG also when it differs (it is taken all
 * the same). */
int sshwire_string_eq(struct sshwire *w, const char *want);
/* An mpint's magnitude: its string with the leading zero bytes left out. */
int sshwire_mpint(struct sshwire *w, const unsigned char **s, size_t *len);
/* Significant bits of a big-endian magnitude without leading zero bytes. */
size_t sshwire_bits(const unsigned char *p, size_t len);
/* A blob being written: n grows up to cap. */
struct sshwire_out {
	unsigned char *p;
	size_t n, cap;
};

/* Each writer: 0, or -ENOBUFS when cap is reached (nothing written). */
int sshwire_put_string(struct sshwire_out *o, const void *s, size_t len);
/* An mpint from a magnitude without leading zero bytes: a zero byte
 * first when the top bit is set, as SSH writes a positive number. */
int sshwire_put_mpint(struct sshwire_out *o, const unsigned char *s, size_t len);
/* Nothing left over: a blob with trailing bytes is not the one it names. */
bool sshwire_end(const struct sshwire *w);
