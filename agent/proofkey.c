/* Keys on the libssh side of a proof: the private key a task carries,
 * vetted before libssh parses it (no passphrase, no KDF the sender picks),
 * its public half, and fingerprints. */
#include <libssh/libssh.h>

#include "proofkey.h"
#include "sshwire.h"

#define OPENSSH_KEY_BEGIN "-----BEGIN OPENSSH PRIVATE KEY-----"
#define OPENSSH_KEY_MAGIC "openssh-key-v1"

void proofkey_freep(ssh_key *k)
{
	ssh_key_free(*k);
	*k = NULL;
}

/* Frees what proofkey_export_pubkey filled in (pubkey_free's fields), so that
 * a failure never hands the caller half a key. */
void proofkey_pubkey_clear(struct pubkey *k)
{
	free(k->type);
	free(k->base64);
	free(k->comment);
	free(k->fingerprint);
	*k = (struct pubkey){ 0 };
}

/* libssh asks for a passphrase only for an encrypted key; refusing it keeps
 * any KDF from running and any terminal from being prompted. */
/* NOLINTNEXTLINE(readability-non-const-parameter): libssh's ssh_auth_callback type */
int proofkey_refuse_passphrase(const char *prompt, char *buf, size_t len, int echo,
			       int verify, void *userdata)
{
	(void)prompt;
	(void)buf;
	(void)len;
	(void)echo;
	(void)verify;
	(void)userdata;
	return -1;
}

char *proofkey_fingerprint(ssh_key key)
{
	unsigned char *hash = NULL;
	size_t hlen = 0;
	if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &hlen) < 0)
		return NULL;
	char *fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, hlen);
	ssh_clean_pubkey_hash(&hash);
	if (!fp)
		return NULL;
	char *ret = strdup(fp);
	ssh_string_free_char(fp);
	return ret;
}

/* An OpenSSH key needs no passphrase when its cipher and KDF are "none".
 * Anything else is refused here, before libssh sees it: the bcrypt round
 * count comes from the task, so running it is the sender's choice of CPU. */
static bool proof_openssh_plain(const char *text)
{
	const char *body = strstr(text, OPENSSH_KEY_BEGIN);
	if (!body)
		return false;
	unsigned char buf[192];
	size_t len = sshwire_base64_prefix(body + strlen(OPENSSH_KEY_BEGIN), buf, sizeof(buf));
	size_t off = strlen(OPENSSH_KEY_MAGIC) + 1;
	if (len < off || memcmp(buf, OPENSSH_KEY_MAGIC, off) != 0)
		return false;
	struct sshwire w = { buf + off, len - off };
	/* ciphername, then kdfname */
	bool cipher_none = sshwire_string_eq(&w, "none") == 0;
	return cipher_none && sshwire_string_eq(&w, "none") == 0;
}

/* PEM encryption shows in the armour: the legacy Proc-Type/DEK-Info
 * headers, or PKCS#8's own label (PBKDF2 with a count from the file). */
static bool proof_pem_encrypted(const char *text)
{
	return strstr(text, "Proc-Type:") || strstr(text, "DEK-Info:") ||
	       strstr(text, "ENCRYPTED PRIVATE KEY");
}

int proofkey_import(const struct secret *cred, ssh_key *ret)
{
	const char *text = cred->data + strspn(cred->data, " \t\r\n");
	bool openssh = strstr(text, OPENSSH_KEY_BEGIN) != NULL;
	if (openssh ? !proof_openssh_plain(text) : proof_pem_encrypted(text))
		return -EKEYREJECTED;
	if (ssh_pki_import_privkey_base64(text, NULL, proofkey_refuse_passphrase, NULL, ret) != SSH_OK)
		return -EINVAL;
	return 0;
}

int proofkey_export_pubkey(ssh_key priv, struct pubkey *out)
{
	_cleanup_key_ ssh_key pub = NULL;
	if (ssh_pki_export_privkey_to_pubkey(priv, &pub) != SSH_OK)
		return -ENOMEM;
	char *b64 = NULL;
	if (ssh_pki_export_pubkey_base64(pub, &b64) != SSH_OK)
		return -ENOMEM;
	out->base64 = strdup(b64);
	ssh_string_free_char(b64);
	const char *type = ssh_key_type_to_char(ssh_key_type(pub));
	out->type = type ? strdup(type) : NULL;
	out->comment = NULL;
	out->fingerprint = proofkey_fingerprint(pub);
	if (!out->base64 || !out->type || !out->fingerprint)
		return -ENOMEM;
	return 0;
}
