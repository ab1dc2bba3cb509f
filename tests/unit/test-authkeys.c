/* authkeys: public key parsing, and authorized_keys edits that keep every
 * line the agent did not add byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>
#include <libssh/libssh.h>
#include <openssl/evp.h>

#include "authkeys.h"
#include "sshwire.h"

/* Made with ssh-keygen; the sk- keys reuse those points in an sk blob.
 * Fingerprints are what ssh-keygen -l printed. */
#define ED_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH4"
#define ED_FP "SHA256:AB9Q1UZ4IdZHy71yaX3yXkdNn5UEM0gNWqVCVruAMdc"
#define ED ("ssh-ed25519 " ED_B64 " test-ed25519@example")
#define ED2_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIKxL9GlU+DgNWnFvk1Oq320PD34AUtH0gJjjDGY8O8CC"
#define ED2_FP "SHA256:IxK4CZnmKB37/IzbMKXrHVQ3D+zYZAvyQA4fwuiFGKE"
#define ED2 ("ssh-ed25519 " ED2_B64 " second")
#define RSA_B64                                                                                    \
	"AAAAB3NzaC1yc2EAAAADAQABAAABgQDPJyzEtnJW7fYAYn8Fvly7Y+6Ep/q7ZrwtuPgijvIK8g9wkq6Wtm4s/ZyA7GLtn+D" \
	"lZRYf90KXT1oyjAtpUlbzzqqzMQ+qZOkE2NoJ9Ww+q8Od19rzyPr+ZrcrnIMu9O6aSALBUkRD54A6aVrNBpVq6Hm4LcpI6f" \
	"x0OKzS00pS+cEX9j2HSC0eeP3NwkyZwMkGdMWp3/ksdeuveAqmBnqgh+iqasmucfaUV4zE8XWItZGdZGb0nHc85n0ZgeaWa" \
	"GCOzhL2gSXEpfTtE7sZlMun+Qv2eeVj2nHqgJnpktoQHp3DO4PhXj6xfCN5IotRDhD4QGH5j0Y1joRUTXpJZrflb2iOV+fx" \
	"2uslhD0Zifa9yTqLPlSnil0jqRZieGeD3Uw9Hkv8jxiSWWOuRXy2gEapUQdiwl75+VfAWo4oyL6jgCiYTPDc6iZBTKhQD3E" \
	"nUwq7+h0O4GVAZIQ7UcreGdBUSKc/gFA19AvyjzMjwE5uz4SySOlapsnKV4J9e4Q5n3U="
#define RSA_FP "SHA256:9p+fiLt+qitTxmjGZ9ehmxiWpqGlF+xXLdHehyUZo1k"
#define RSA ("ssh-rsa " RSA_B64 " test-rsa@example")
#define P256_B64                                                                                   \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFEzsoikHex4cVsdV/IQsy50ufZXpbRYvJfWvlZYLvZ" \
	"OU3ELOVb33c9tHww0Eu4Nt0pIyHNdZi76XM/eEZVio08="
#define P256_FP "SHA256:Fd6ZBnVd2tBcV7R+8OkkYWwz7fwtgewLSlX+XPqPS5Q"
#define P256 ("ecdsa-sha2-nistp256 " P256_B64 " test-ecdsa@example")
#define P384_B64                                                                                   \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIwB9RgzEvfiO43EcDcjaILOdsrcPFwQNXE89ikCa/m" \
	"XTTvP5iECiO5NSShiM5tScOPpWot4s9T17KG8/Rtb2cYAp0HRhN6jHXDPCZiI4VzgQWfaMKbV8PVK2WAm1wsopQ=="
#define P384_FP "SHA256:unRsDPtuht1qpg4iPE7Sgj9kDb519C3sX5sMUOAcJ2o"
#define P521_B64                                                                                   \
	"AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAG9eUnybFJpZ5e+lj321vIkay6mw4+8PTz47S96kF9" \
	"JLlaesKIU0MBWcGvneV51FYdyFa3+KRBT5TrMmMPh21EVSwF25fCXD6Ii0Tk7ooGcj3/ZhQcHHrKTPXwg2G9Mg6ZZIYYrFR" \
	"+TErW4Br7GrW8gv6KS8CmcbSL/1QXESfWdT95oWw=="
#define P521_FP "SHA256:w08yAZTy2BOmgKLAPR/YNtpIhG0cen5Uf5jhkb6rNYw"
#define SKED_B64                                                                                   \
	"AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH4" \
	"AAAABHNzaDo="
#define SKED_FP "SHA256:HdzXFn4YtZKzzd+iWHeObhT7HnNib+pQyqUeTdVbfVI"
#define SKEC_B64                                                                                   \
	"AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBFEzsoikHex4cVsdV/IQsy5" \
	"0ufZXpbRYvJfWvlZYLvZOU3ELOVb33c9tHww0Eu4Nt0pIyHNdZi76XM/eEZVio08AAAAEc3NoOg=="
#define SKEC_FP "SHA256:3kt7TaPf4Lu2F1/8a9eSLCCF3Wxb8Q2ZM6ga8lu7974"

/* Crafted blobs: a 512-bit RSA modulus; an ed25519 blob with four bytes
 * after it; one cut short; one without its padding; an ECDSA blob named nistp256 carrying a P-384
 * curve and point; blobs whose own type name is not the one they carry
 * (libssh accepts both under the type it is told). */
#define SMALL_RSA_B64                                                                              \
	"AAAAB3NzaC1yc2EAAAADAQABAAAAQQC1v5ktyenGFmEudpamzswbeOUQYXMR2KPCzm9EftTVex4v64lBTDQ8ECfE0cOGu8T" \
	"NYT4w2PFq35G3WEoiZbH1"
#define ED_TRAILING_B64 ED_B64 "AAAAAA=="
#define ED_SHORT_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoQ=="
#define P256_CURVE_P384_B64                                                                        \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAzODQAAABhBIwB9RgzEvfiO43EcDcjaILOdsrcPFwQNXE89ikCa/m" \
	"XTTvP5iECiO5NSShiM5tScOPpWot4s9T17KG8/Rtb2cYAp0HRhN6jHXDPCZiI4VzgQWfaMKbV8PVK2WAm1wsopQ=="

#define P384_UNPADDED_B64                                                                          \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBIwB9RgzEvfiO43EcDcjaILOdsrcPFwQNXE89ikCa/m" \
	"XTTvP5iECiO5NSShiM5tScOPpWot4s9T17KG8/Rtb2cYAp0HRhN6jHXDPCZiI4VzgQWfaMKbV8PVK2WAm1wsopQ"
#define RSA_NAMED_ED_B64                                                                           \
	"AAAAC3NzaC1lZDI1NTE5AAAAAwEAAQAAAQEAvTm/zvP/qtGClRwRJkXBgJuWSlBOUvPg+q0LJzOoW2ntv7PHLt69ude20Tn" \
	"VdxW4SyUlgZoGzljOM+iugLpdXXm3zG0Kdz5PLYFslikpk7IbsvrrP/RNy1LmMIRDpwH9BIXiSKtYeGjBSj/fa8e6j1sT1d" \
	"TcKfkICZ58Rf/Ei0cbR5Afey4nOJhAvNaSqaasHpGI9drNjO90tcco//tUjQhQLmi6aKzjpoFWASU6r2TR5OJU/rHvY" \
	"d1u+hM+s1UrMeiqQsmGv0EZexKwDRYRw3VgtcQ5SYU6oeSgX9i0at9j7qvAbDOQlzHQUfzbm68D5tHTTSujGAA5FicaEz9YDw=="
#define P256_NAMED_P384_B64                                                                        \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAyNTYAAABBBFEzsoikHex4cVsdV/IQsy50ufZXpbRYvJfWvlZYLvZ" \
	"OU3ELOVb33c9tHww0Eu4Nt0pIyHNdZi76XM/eEZVio08="

#define TASK "aee8d2fe-5484-4753-9177-5a38dc15546c"
#define MARKER_ED "# kps-agent: keypair=kp1 task=" TASK " " ED_FP "\n"
#define MARKER_ED2 "# kps-agent: keypair=kp2 task=t2 " ED2_FP "\n"

static struct pubkey key_of(const char *line)
{
	struct pubkey k = { 0 };
	assert_int_equal(pubkey_parse(line, strlen(line), &k), 0);
	return k;
}

static struct authkeys *parse_mem(const char *text, size_t len)
{
	struct authkeys *ak = NULL;
	assert_int_equal(authkeys_parse(text, len, &ak), 0);
	assert_non_null(ak);
	return ak;
}

static struct authkeys *parse_str(const char *text)
{
	return parse_mem(text, strlen(text));
}

static void assert_text_mem(const struct authkeys *ak, const char *want, size_t want_len)
{
	char *got = NULL;
	size_t len = 0;
	assert_int_equal(authkeys_serialise(ak, &got, &len), 0);
	assert_non_null(got);
	if (len != want_len || memcmp(got, want, len) != 0)
		fail_msg("serialised text differs:\n--- got (%zu)\n%.*s\n--- want (%zu)\n%.*s", len,
			 (int)len, got, want_len, (int)want_len, want);
	free(got);
}

static void assert_text(const struct authkeys *ak, const char *want)
{
	assert_text_mem(ak, want, strlen(want));
}

/* Every shape an admin or another tool may leave behind; some hold what an
 * earlier run of the agent left (ours). */
static const struct {
	const char *text;
	size_t len;
	bool ours;
} shapes[] = {
#define SHAPE(s) { s, sizeof(s) - 1, false }
#define SHAPE_OURS(s) { s, sizeof(s) - 1, true }
	SHAPE(""),
	SHAPE("\n"),
	SHAPE("\n\n\n"),
	SHAPE("\r\n"),
	SHAPE("# just a comment"),
	SHAPE("ssh-ed25519 " ED_B64 " test-ed25519@example\n"),
	SHAPE("ssh-ed25519 " ED_B64),
	SHAPE("ssh-ed25519 " ED_B64 "\r\nssh-rsa " RSA_B64 "\r\n"),
	SHAPE("# comment\n\nssh-ed25519 " ED_B64 " a\r\n  \t\n#x\rssh-rsa " RSA_B64 " b"),
	SHAPE("a\0b\nssh-ed25519 " ED_B64 "\0trailing\n\0\0\n"),
	SHAPE("from=\"10.0.0.1,10.0.0.2\",command=\"echo \\\"hi, there\\\"\" ssh-ed25519 " ED_B64 " c\n"),
	SHAPE("restrict,pty ssh-ed25519 " ED_B64 "\nssh-ed25519 " ED_B64 "\nssh-ed25519 " ED_B64 "\n"),
	SHAPE("garbage line\n\xff\xfe invalid utf-8 \xc3\x28\n\x1b[31m\n"),
	SHAPE("ssh-ed25519 notbase64!!\nssh-ed25519\nunknown-type AAAA\n"
	      "\"unterminated ssh-ed25519 " ED_B64 "\n"),
	SHAPE_OURS("# kps-agent: keypair=old task=t " ED_FP "\n"),
	SHAPE_OURS("# kps-agent: keypair=old task=t " ED_FP "\nssh-ed25519 " ED_B64 "\n# after"),
	SHAPE("# kps-agent: keypair=broken\nssh-ed25519 " ED_B64 "\n"),
	SHAPE("\r\r\n\r"),
	SHAPE("   \t ssh-ed25519 " ED_B64 "   \t\n"),
#undef SHAPE
#undef SHAPE_OURS
};

static void test_roundtrip_shapes(void **state)
{
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(shapes); i++) {
		struct authkeys *ak = parse_mem(shapes[i].text, shapes[i].len);
		assert_text_mem(ak, shapes[i].text, shapes[i].len);
		authkeys_free(ak);
	}
}

/* Edits that find nothing to do leave every byte alone. */
static void test_noop_edits_keep_bytes(void **state)
{
	(void)state;
	struct pubkey p384 = key_of("ecdsa-sha2-nistp384 " P384_B64);
	for (size_t i = 0; i < ELEMENTSOF(shapes); i++) {
		struct authkeys *ak = parse_mem(shapes[i].text, shapes[i].len);
		assert_int_equal(authkeys_remove_key(ak, &p384), 0);
		struct strv none = { 0 };
		assert_int_equal(authkeys_remove_managed(ak, &none, NULL, NULL), 0);
		assert_text_mem(ak, shapes[i].text, shapes[i].len);
		authkeys_free(ak);
	}
	pubkey_free(&p384);
}

/* Add then remove gives back the exact input, whichever way it is removed
 * (removing every managed entry also takes what an earlier run left). */
static void test_add_then_remove_is_identity(void **state)
{
	(void)state;
	struct pubkey key = key_of(ED2);
	struct strv names = { 0 };
	assert_int_equal(strv_push(&names, "kp2"), 0);
	for (size_t i = 0; i < ELEMENTSOF(shapes); i++) {
		for (int how = shapes[i].ours ? 1 : 0; how < 3; how++) {
			struct authkeys *ak = parse_mem(shapes[i].text, shapes[i].len);
			assert_int_equal(authkeys_add(ak, "kp2", "t2", &key), 0);
			assert_true(authkeys_has_key(ak, &key));
			if (how == 0)
				assert_int_equal(authkeys_remove_managed(ak, NULL, NULL, NULL), 0);
			else if (how == 1)
				assert_int_equal(authkeys_remove_managed(ak, &names, NULL, NULL), 0);
			else
				assert_int_equal(authkeys_remove_key(ak, &key), 2);
			assert_false(authkeys_has_key(ak, &key));
			assert_text_mem(ak, shapes[i].text, shapes[i].len);
			authkeys_free(ak);
		}
	}
	strv_free(&names);
	pubkey_free(&key);
}

static void test_add_to_empty(void **state)
{
	(void)state;
	struct pubkey key = key_of(ED);
	struct authkeys *ak = parse_str("");
	assert_int_equal(authkeys_add(ak, "kp1", TASK, &key), 0);
	assert_text(ak, MARKER_ED "ssh-ed25519 " ED_B64 " test-ed25519@example\n");
	authkeys_free(ak);
	pubkey_free(&key);
}

static void test_add_to_unterminated(void **state)
{
	(void)state;
	struct pubkey key = key_of(ED);
	struct pubkey key2 = key_of(ED2);
	struct authkeys *ak = parse_str("# keep\nssh-rsa " RSA_B64 " last");
	assert_int_equal(authkeys_add(ak, "kp1", TASK, &key), 0);
	assert_int_equal(authkeys_add(ak, "kp2", "t2", &key2), 0);
	assert_text(ak, "# keep\nssh-rsa " RSA_B64 " last\n" MARKER_ED "ssh-ed25519 " ED_B64
			" test-ed25519@example\n" MARKER_ED2 "ssh-ed25519 " ED2_B64 " second\n");
	authkeys_free(ak);
	pubkey_free(&key);
	pubkey_free(&key2);
}

/* What the agent wrote parses back as managed once it is on disk. */
static void test_add_survives_reparse(void **state)
{
	(void)state;
	const char *orig = "# admin\r\nssh-rsa " RSA_B64 "\r\n";
	struct pubkey key = key_of(ED);
	struct authkeys *ak = parse_str(orig);
	assert_int_equal(authkeys_add(ak, "kp1", TASK, &key), 0);
	char *text = NULL;
	size_t len = 0;
	assert_int_equal(authkeys_serialise(ak, &text, &len), 0);
	authkeys_free(ak);

	ak = parse_mem(text, len);
	free(text);
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_int_equal(n_removed, 1);
	assert_true(pubkey_equal(&removed[0], &key));
	assert_text(ak, orig);
	pubkey_free(&removed[0]);
	free(removed);
	authkeys_free(ak);
	pubkey_free(&key);
}

static void test_add_refuses_bad_names(void **state)
{
	(void)state;
	static const char *bad[] = { "", "a b", "a/b", "a\nb", "kp=1", "ü",
				     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" };
	struct pubkey key = key_of(ED);
	struct authkeys *ak = parse_str("x\n");
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		assert_int_equal(authkeys_add(ak, bad[i], "t", &key), -EINVAL);
		assert_int_equal(authkeys_add(ak, "kp", bad[i], &key), -EINVAL);
	}
	struct pubkey broken = key;
	broken.comment = (char *)"two\nlines";
	assert_int_equal(authkeys_add(ak, "kp", "t", &broken), -EINVAL);
	broken = key;
	broken.fingerprint = NULL;
	assert_int_equal(authkeys_add(ak, "kp", "t", &broken), -EINVAL);
	assert_int_equal(authkeys_add(ak, "kp.1_A-z", "t", &key), 0);
	assert_int_equal(authkeys_remove_key(ak, &key), 2);
	assert_text(ak, "x\n");
	authkeys_free(ak);
	pubkey_free(&key);
}

#define FILE_MANAGED                                                                               \
	"# top\n"                                                                                  \
	"ssh-rsa " RSA_B64 " admin\n" MARKER_ED "ssh-ed25519 " ED_B64 " test-ed25519@example\n"    \
	"\n" MARKER_ED2 "ssh-ed25519 " ED2_B64 " second\n"                                         \
	"# end"

static void test_remove_managed_all(void **state)
{
	(void)state;
	struct authkeys *ak = parse_str(FILE_MANAGED);
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_text(ak, "# top\nssh-rsa " RSA_B64 " admin\n\n# end");
	assert_int_equal(n_removed, 2);
	assert_string_equal(removed[0].type, "ssh-ed25519");
	assert_string_equal(removed[0].base64, ED_B64);
	assert_string_equal(removed[0].comment, "test-ed25519@example");
	assert_string_equal(removed[0].fingerprint, ED_FP);
	assert_string_equal(removed[1].base64, ED2_B64);
	assert_string_equal(removed[1].fingerprint, ED2_FP);
	for (size_t i = 0; i < n_removed; i++)
		pubkey_free(&removed[i]);
	free(removed);
	authkeys_free(ak);
}

static void test_remove_managed_by_name(void **state)
{
	(void)state;
	struct authkeys *ak = parse_str(FILE_MANAGED);
	struct strv names = { 0 };
	assert_int_equal(strv_push(&names, "kp2"), 0);
	assert_int_equal(strv_push(&names, "nosuch"), 0);
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, &names, &removed, &n_removed), 0);
	assert_int_equal(n_removed, 1);
	assert_string_equal(removed[0].fingerprint, ED2_FP);
	assert_text(ak, "# top\nssh-rsa " RSA_B64 " admin\n" MARKER_ED "ssh-ed25519 " ED_B64
			" test-ed25519@example\n\n# end");

	/* A second call appends to what the first one handed back. */
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_int_equal(n_removed, 2);
	assert_string_equal(removed[1].fingerprint, ED_FP);
	assert_text(ak, "# top\nssh-rsa " RSA_B64 " admin\n\n# end");
	for (size_t i = 0; i < n_removed; i++)
		pubkey_free(&removed[i]);
	free(removed);
	strv_free(&names);
	authkeys_free(ak);
}

/* The admin deleted or replaced the key under a marker: the marker goes,
 * the line under it stays. */
static void test_remove_managed_stale_marker(void **state)
{
	(void)state;
	struct authkeys *ak = parse_str(MARKER_ED "ssh-ed25519 " ED2_B64 " admin's own\n" MARKER_ED
					"# a comment\n" MARKER_ED MARKER_ED2 "ssh-ed25519 " ED2_B64
					" second\n" MARKER_ED "ssh-ed25519 AAAAC3Nz\n" MARKER_ED);
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_int_equal(n_removed, 1);
	assert_string_equal(removed[0].fingerprint, ED2_FP);
	assert_text(ak, "ssh-ed25519 " ED2_B64 " admin's own\n# a comment\nssh-ed25519 AAAAC3Nz\n");
	pubkey_free(&removed[0]);
	free(removed);
	authkeys_free(ak);
}

/* By name, a stale marker of another key pair is not ours to clean. */
static void test_remove_managed_stale_other_name_kept(void **state)
{
	(void)state;
	const char *text = MARKER_ED2 "# replaced by hand\n" MARKER_ED "ssh-ed25519 " ED2_B64 "\n";
	struct authkeys *ak = parse_str(text);
	struct strv names = { 0 };
	assert_int_equal(strv_push(&names, "kp1"), 0);
	assert_int_equal(authkeys_remove_managed(ak, &names, NULL, NULL), 0);
	assert_text(ak, MARKER_ED2 "# replaced by hand\nssh-ed25519 " ED2_B64 "\n");
	strv_free(&names);
	authkeys_free(ak);
}

/* Options the admin put on a managed key do not hide it from removal, and
 * CRLF endings do not either; markers with anything extra are comments. A
 * comment with control characters is not handed back. */
static void test_remove_managed_variants(void **state)
{
	(void)state;
	struct authkeys *ak = parse_str("# kps-agent: keypair=kp1 task=t " ED_FP "\r\n"
					"from=\"10.0.0.0/8\" ssh-ed25519 " ED_B64 " x\x1b]0;y\a\r\n"
					"# kps-agent: keypair=kp2 task=t " ED2_FP " extra\n"
					"ssh-ed25519 " ED2_B64 "\n"
					" # kps-agent: keypair=kp2 task=t " ED2_FP "\n"
					"ssh-ed25519 " ED2_B64 "\n");
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_int_equal(n_removed, 1);
	assert_string_equal(removed[0].fingerprint, ED_FP);
	assert_null(removed[0].comment);
	assert_text(ak, "# kps-agent: keypair=kp2 task=t " ED2_FP " extra\n"
			"ssh-ed25519 " ED2_B64 "\n"
			" # kps-agent: keypair=kp2 task=t " ED2_FP "\n"
			"ssh-ed25519 " ED2_B64 "\n");
	pubkey_free(&removed[0]);
	free(removed);
	authkeys_free(ak);
}

static void test_remove_key(void **state)
{
	(void)state;
	struct pubkey key = key_of(ED);
	struct authkeys *ak = parse_str(
		"# ssh-ed25519 " ED_B64 " in a comment\n"
		"from=\"10.0.0.1,10.0.0.2\",command=\"echo \\\"a, b\\\" c\" ssh-ed25519 " ED_B64 " opt\n"
		"ssh-rsa " RSA_B64 " keep\n"
		"command=\"echo ssh-ed25519 " ED_B64 "\" ssh-rsa " RSA_B64 " keep2\n"
		"ssh-ed25519 " ED_B64 " other comment\r\n"
		"# kps-agent: keypair=kp9 task=t9 " ED_FP "\n"
		"ssh-ed25519 " ED_B64 " managed\n"
		"# kps-agent: keypair=kp2 task=t2 " ED2_FP "\n"
		"ssh-ed25519 " ED_B64 " under a foreign marker\n"
		"\tssh-ed25519\t" ED_B64 "\n"
		"ssh-ed25519 " ED2_B64 "\n");
	assert_int_equal(authkeys_remove_key(ak, &key), 6);
	assert_false(authkeys_has_key(ak, &key));
	assert_text(ak, "# ssh-ed25519 " ED_B64 " in a comment\n"
			"ssh-rsa " RSA_B64 " keep\n"
			"command=\"echo ssh-ed25519 " ED_B64 "\" ssh-rsa " RSA_B64 " keep2\n"
			"# kps-agent: keypair=kp2 task=t2 " ED2_FP "\n"
			"ssh-ed25519 " ED2_B64 "\n");
	assert_int_equal(authkeys_remove_key(ak, &key), 0);
	authkeys_free(ak);
	pubkey_free(&key);
}

/* sshd reads a line as a C string: a NUL ends what it sees of the line. */
static void test_nul_ends_line(void **state)
{
	(void)state;
	static const char text[] = "ssh-ed25519 " ED_B64 "\0junk\n"
				   "junk\0ssh-ed25519 " ED_B64 "\n"
				   "ssh-rsa\0 " RSA_B64 "\n";
	static const char rest[] = "junk\0ssh-ed25519 " ED_B64 "\n"
				   "ssh-rsa\0 " RSA_B64 "\n";
	struct pubkey ed = key_of(ED);
	struct pubkey rsa = key_of(RSA);
	struct authkeys *ak = parse_mem(text, sizeof(text) - 1);
	assert_true(authkeys_has_key(ak, &ed));
	assert_false(authkeys_has_key(ak, &rsa));
	assert_int_equal(authkeys_remove_key(ak, &ed), 1);
	assert_false(authkeys_has_key(ak, &ed));
	assert_text_mem(ak, rest, sizeof(rest) - 1);
	authkeys_free(ak);
	pubkey_free(&ed);
	pubkey_free(&rsa);
}

static void test_has_key(void **state)
{
	(void)state;
	struct pubkey ed = key_of(ED);
	struct pubkey rsa = key_of(RSA);
	struct pubkey p256 = key_of(P256);
	struct pubkey ed2 = key_of(ED2);
	struct authkeys *ak = parse_str("# ssh-ed25519 " ED_B64 "\n"
					"command=\"echo ssh-ecdsa-sha2-nistp256 " P256_B64 "\" "
					"ssh-rsa " RSA_B64 "\n"
					"no-pty,from=\"a b\" ecdsa-sha2-nistp256 " P256_B64 " c\n"
					"ssh-rsa " ED2_B64 "\n");
	assert_false(authkeys_has_key(ak, &ed));
	assert_true(authkeys_has_key(ak, &rsa));
	assert_true(authkeys_has_key(ak, &p256));
	assert_false(authkeys_has_key(ak, &ed2));
	assert_int_equal(authkeys_remove_key(ak, &p256), 1);
	assert_false(authkeys_has_key(ak, &p256));
	assert_int_equal(authkeys_add(ak, "kp", "t", &ed), 0);
	assert_true(authkeys_has_key(ak, &ed));
	authkeys_free(ak);
	pubkey_free(&ed);
	pubkey_free(&rsa);
	pubkey_free(&p256);
	pubkey_free(&ed2);
}

/* The fingerprint is ssh-keygen's, byte for byte: asked of ssh-keygen -lf
 * itself for a key of each type. */
static void expect_keygen_fp(const char *type, const char *b64)
{
	char path[] = "/tmp/kps-test-fp-XXXXXX", cmd[128], out[512] = "";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "%s %s\n", type, b64);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof(cmd), "ssh-keygen -lf %s", path);
	FILE *p = popen(cmd, "r");	/* NOLINT(cert-env33-c): ssh-keygen is the reference */
	assert_non_null(p);
	assert_non_null(fgets(out, sizeof(out), p));
	assert_int_equal(pclose(p), 0);
	unlink(path);
	char *line = NULL;
	assert_true(asprintf(&line, "%s %s", type, b64) > 0);
	struct pubkey k = { 0 };
	assert_int_equal(pubkey_parse(line, strlen(line), &k), 0);
	char *fp = strchr(out, ' ');	/* "bits SHA256:... comment (TYPE)" */
	assert_non_null(fp);
	assert_memory_equal(fp + 1, k.fingerprint, strlen(k.fingerprint));
	assert_int_equal(fp[1 + strlen(k.fingerprint)], ' ');
	pubkey_free(&k);
	free(line);
}

static void test_pubkey_fingerprint_keygen(void **state)
{
	(void)state;
	expect_keygen_fp("ssh-ed25519", ED_B64);
	expect_keygen_fp("ssh-rsa", RSA_B64);
	expect_keygen_fp("ecdsa-sha2-nistp256", P256_B64);
	expect_keygen_fp("ecdsa-sha2-nistp384", P384_B64);
	expect_keygen_fp("ecdsa-sha2-nistp521", P521_B64);
	expect_keygen_fp("sk-ssh-ed25519@openssh.com", SKED_B64);
	expect_keygen_fp("sk-ecdsa-sha2-nistp256@openssh.com", SKEC_B64);
}

/* pubkey.c took its verdict and fingerprint from libssh until it decoded
 * blobs itself: on blobs whose shape is right but whose key is not, its
 * answer must still be libssh's, fingerprint included. */
struct blob {
	unsigned char b[512];
	size_t n;
};

static void blob_put(struct blob *bl, const void *p, size_t n)
{
	assert_true(bl->n + 4 + n <= sizeof(bl->b));
	bl->b[bl->n++] = (unsigned char)(n >> 24);
	bl->b[bl->n++] = (unsigned char)(n >> 16);
	bl->b[bl->n++] = (unsigned char)(n >> 8);
	bl->b[bl->n++] = (unsigned char)n;
	memcpy(bl->b + bl->n, p, n);
	bl->n += n;
}

static void blob_put_str(struct blob *bl, const char *s)
{
	blob_put(bl, s, strlen(s));
}

/* The fields of a known key's blob after its type name. */
static size_t fields_of(const char *b64, size_t skip, unsigned char *out)
{
	unsigned char raw[512];
	size_t n;
	assert_int_equal(sshwire_base64_decode(b64, strlen(b64), true, raw, &n), 0);
	memcpy(out, raw + skip, n - skip);
	return n - skip;
}

static void expect_as_libssh(const char *type, const char *b64)
{
	ssh_key k = NULL;
	enum ssh_keytypes_e t = ssh_key_type_from_name(type);
	bool lib_ok = ssh_pki_import_pubkey_base64(b64, t, &k) == SSH_OK && ssh_key_type(k) == t;
	char *lib_fp = NULL;
	/* A key libssh imports but cannot write again (e = 0) has no hash. */
	unsigned char *h = NULL;
	size_t hlen = 0;
	lib_ok = lib_ok && ssh_get_publickey_hash(k, SSH_PUBLICKEY_HASH_SHA256, &h, &hlen) == SSH_OK;
	if (lib_ok) {
		lib_fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, h, hlen);
		ssh_clean_pubkey_hash(&h);
	}
	ssh_key_free(k);
	struct pubkey ours = { 0 };
	int r = pubkey_from_parts(type, strlen(type), b64, strlen(b64), NULL, 0, &ours);
	if (lib_ok != (r == 0))
		fail_msg("%s %s: libssh %s, pubkey.c %d", type, b64, lib_ok ? "accepts" : "refuses", r);
	if (lib_ok)
		assert_string_equal(ours.fingerprint, lib_fp);
	ssh_string_free_char(lib_fp);
	pubkey_free(&ours);
}

static void expect_blob_as_libssh(const char *type, const struct blob *bl)
{
	char b64[700];
	EVP_EncodeBlock((unsigned char *)b64, bl->b, (int)bl->n);
	expect_as_libssh(type, b64);
}

static void test_pubkey_as_libssh(void **state)
{
	(void)state;
	unsigned char ed[32], p256[256], rsa[512], zero[600] = { 0 };
	fields_of(ED_B64, 4 + 11 + 4, ed);
	size_t p256_len = fields_of(P256_B64, 4 + 19 + 4 + 8 + 4, p256);
	size_t rsa_len = fields_of(RSA_B64, 4 + 7, rsa);
	const char *sked = "sk-ssh-ed25519@openssh.com", *skec = "sk-ecdsa-sha2-nistp256@openssh.com";

	expect_as_libssh("ssh-ed25519", ED_B64);
	expect_as_libssh("ssh-rsa", RSA_B64);
	expect_as_libssh("ecdsa-sha2-nistp521", P521_B64);
	expect_as_libssh(sked, SKED_B64);
	expect_as_libssh(skec, SKEC_B64);
	/* An Ed25519 key of 0, 31 and 33 bytes, plain and on a security key. */
	for (size_t len = 0; len <= 33; len += len == 0 ? 31 : 1) {
		struct blob a = { 0 }, b = { 0 };
		blob_put_str(&a, "ssh-ed25519");
		blob_put(&a, zero, len);
		expect_blob_as_libssh("ssh-ed25519", &a);
		blob_put_str(&b, sked);
		blob_put(&b, zero, len);
		blob_put_str(&b, "ssh:");
		expect_blob_as_libssh(sked, &b);
	}
	/* P-256 points: the real one, off the curve, infinity, compressed,
	 * empty; plain and on a security key. */
	for (int c = 0; c < 5; c++) {
		unsigned char q[256];
		size_t qlen = p256_len;
		memcpy(q, p256, p256_len);
		if (c == 1)
			q[40] ^= 1;
		if (c == 2)
			q[0] = 0, qlen = 1;
		if (c == 3)
			q[0] = (unsigned char)(2 + (p256[64] & 1)), qlen = 33;
		if (c == 4)
			qlen = 0;
		struct blob a = { 0 }, b = { 0 };
		blob_put_str(&a, "ecdsa-sha2-nistp256");
		blob_put_str(&a, "nistp256");
		blob_put(&a, q, qlen);
		expect_blob_as_libssh("ecdsa-sha2-nistp256", &a);
		blob_put_str(&b, skec);
		blob_put_str(&b, "nistp256");
		blob_put(&b, q, qlen);
		blob_put_str(&b, "ssh:");
		expect_blob_as_libssh(skec, &b);
	}
	/* RSA: e empty, zero, with a leading zero byte; n as ssh-keygen wrote it. */
	const unsigned char *n = rsa + 4 + 3;	/* after e = 65537 */
	size_t n_len = rsa_len - 4 - 3;
	static const unsigned char e0[] = { 0 }, e1[] = { 0, 1, 0, 1 };
	const struct { const unsigned char *e; size_t len; } es[] = { { e0, 0 }, { e0, 1 }, { e1, 4 } };
	for (size_t i = 0; i < ELEMENTSOF(es); i++) {
		struct blob a = { 0 };
		blob_put_str(&a, "ssh-rsa");
		blob_put(&a, es[i].e, es[i].len);
		assert_true(a.n + n_len <= sizeof(a.b));
		memcpy(a.b + a.n, n, n_len);
		a.n += n_len;
		expect_blob_as_libssh("ssh-rsa", &a);
	}
	/* Padding bits that are not zero ('8' is ...00, '9' ...01). */
	char odd[] = P256_B64;
	char *last = strchr(odd, '=') - 1;
	assert_int_equal(*last, '8');
	*last = '9';
	expect_as_libssh("ecdsa-sha2-nistp256", odd);
}

static void check_parse(const char *line, const char *type, const char *b64, const char *comment,
			const char *fp)
{
	struct pubkey k = { 0 };
	assert_int_equal(pubkey_parse(line, strlen(line), &k), 0);
	assert_string_equal(k.type, type);
	assert_string_equal(k.base64, b64);
	if (comment)
		assert_string_equal(k.comment, comment);
	else
		assert_null(k.comment);
	assert_string_equal(k.fingerprint, fp);
	pubkey_free(&k);
}

static void test_pubkey_parse_types(void **state)
{
	(void)state;
	check_parse(ED, "ssh-ed25519", ED_B64, "test-ed25519@example", ED_FP);
	check_parse(RSA, "ssh-rsa", RSA_B64, "test-rsa@example", RSA_FP);
	check_parse(P256, "ecdsa-sha2-nistp256", P256_B64, "test-ecdsa@example", P256_FP);
	check_parse("ecdsa-sha2-nistp384 " P384_B64, "ecdsa-sha2-nistp384", P384_B64, NULL, P384_FP);
	check_parse("ecdsa-sha2-nistp521 " P521_B64 " p521", "ecdsa-sha2-nistp521", P521_B64, "p521",
		    P521_FP);
	check_parse("sk-ssh-ed25519@openssh.com " SKED_B64 " sk", "sk-ssh-ed25519@openssh.com", SKED_B64,
		    "sk", SKED_FP);
	check_parse("sk-ecdsa-sha2-nistp256@openssh.com " SKEC_B64, "sk-ecdsa-sha2-nistp256@openssh.com",
		    SKEC_B64, NULL, SKEC_FP);
}

static void test_pubkey_parse_separators(void **state)
{
	(void)state;
	check_parse("ssh-ed25519\t" ED_B64 "  \t my laptop  key \t", "ssh-ed25519", ED_B64,
		    "my laptop  key", ED_FP);
	check_parse("  ssh-ed25519 " ED_B64 " ", "ssh-ed25519", ED_B64, NULL, ED_FP);
	check_parse("ssh-ed25519 " ED_B64 " caf\xc3\xa9 #1", "ssh-ed25519", ED_B64, "caf\xc3\xa9 #1",
		    ED_FP);

	struct pubkey k = key_of("ssh-ed25519\t\t" ED_B64 "\t a  b ");
	char *s = pubkey_format(&k);
	assert_string_equal(s, "ssh-ed25519 " ED_B64 " a  b");
	free(s);
	pubkey_free(&k);
	k = key_of("ssh-ed25519 " ED_B64);
	s = pubkey_format(&k);
	assert_string_equal(s, "ssh-ed25519 " ED_B64);
	free(s);
	pubkey_free(&k);
}

static void test_pubkey_parse_refusals(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		size_t len;
	} bad[] = {
#define BAD(s) { s, sizeof(s) - 1 }
		BAD(""),
		BAD(" \t "),
		BAD("ssh-ed25519"),
		BAD("ssh-ed25519 "),
		BAD("restrict ssh-ed25519 " ED_B64),
		BAD("from=\"10.0.0.1\" ssh-ed25519 " ED_B64 " c"),
		BAD("ssh-ed25519 " ED_B64 "\n"),
		BAD("ssh-ed25519 " ED_B64 " a\nssh-rsa " RSA_B64),
		BAD("ssh-ed25519 " ED_B64 "\r"),
		BAD("ssh-ed25519 " ED_B64 " a\rb"),
		BAD("ssh-ed25519 " ED_B64 "\0"),
		BAD("ssh-ed25519 " ED_B64 " a\0b"),
		BAD("ssh-ed25519 " ED_B64 " \x1b[0m"),
		BAD("ssh-ed25519 " ED_B64 " del\x7f"),
		BAD("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH"),
		BAD("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDIM9WHY2nKdpSZpc1WMZEC6jGt4ZP2Ru7lQoTFsneH!"),
		BAD("ssh-ed25519 ====" ED_B64),
		BAD("ecdsa-sha2-nistp384 " P384_UNPADDED_B64),
		BAD("ssh-ed25519 " ED_TRAILING_B64),
		BAD("ssh-ed25519 " ED_SHORT_B64),
		BAD("ssh-rsa " ED_B64),
		BAD("ecdsa-sha2-nistp256 " P384_B64),
		BAD("ecdsa-sha2-nistp256 " P256_CURVE_P384_B64),
		BAD("sk-ssh-ed25519@openssh.com " ED_B64),
		BAD("ssh-ed25519 " SKED_B64),
		BAD("ssh-rsa " SMALL_RSA_B64),
		BAD("ssh-rsa " RSA_NAMED_ED_B64),
		BAD("ecdsa-sha2-nistp256 " P256_NAMED_P384_B64),
		BAD("ssh-dss " ED_B64),
		BAD("ssh-ed25519-cert-v01@openssh.com " ED_B64),
		BAD("SSH-ED25519 " ED_B64),
		BAD("ssh-ed25519 " ED2_B64 "x"),
#undef BAD
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct pubkey k = { 0 };
		int r = pubkey_parse(bad[i].text, bad[i].len, &k);
		if (r != -EINVAL)
			fail_msg("bad[%zu] gave %d", i, r);
		assert_null(k.type);
		assert_null(k.fingerprint);
	}
}

/* 16 KiB of key line is the most a task may carry. */
static void test_pubkey_parse_length(void **state)
{
	(void)state;
	size_t max = 16 * 1024;
	char *line = malloc(max + 2);
	assert_non_null(line);
	int n = snprintf(line, max + 2, "ssh-ed25519 %s ", ED_B64);
	memset(line + n, 'c', max + 1 - (size_t)n);
	line[max + 1] = '\0';

	struct pubkey k = { 0 };
	assert_int_equal(pubkey_parse(line, max + 1, &k), -EINVAL);
	assert_int_equal(pubkey_parse(line, max, &k), 0);
	assert_int_equal(strlen(k.comment), max - (size_t)n);
	pubkey_free(&k);
	free(line);
}

static void test_pubkey_equal(void **state)
{
	(void)state;
	struct pubkey a = key_of(ED);
	struct pubkey b = key_of("ssh-ed25519 " ED_B64 " another comment");
	struct pubkey c = key_of(ED2);
	struct pubkey d = key_of("sk-ssh-ed25519@openssh.com " SKED_B64);
	assert_true(pubkey_equal(&a, &b));
	assert_false(pubkey_equal(&a, &c));
	assert_false(pubkey_equal(&a, &d));
	pubkey_free(&a);
	pubkey_free(&b);
	pubkey_free(&c);
	pubkey_free(&d);
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* A big file: 10,000 lines with a managed entry every 100 lines. Returns
 * how many lines carry the P-256 key. */
static int build_big(struct buf *in, struct buf *expect)
{
	int n_p256 = 0;
	for (int i = 0; i < 10000; i++) {
		if (i % 100 == 50) {
			assert_int_equal(buf_puts(in, MARKER_ED2), 0);
			assert_int_equal(buf_printf(in, "ssh-ed25519 %s second\n", ED2_B64), 0);
			i++;
			continue;
		}
		n_p256 += i % 3 == 1;
		struct buf *both[] = { in, expect };
		for (size_t j = 0; j < ELEMENTSOF(both); j++) {
			int r;
			if (i % 3 == 0)
				r = buf_printf(both[j], "ssh-rsa %s user%d@host\n", RSA_B64, i);
			else if (i % 3 == 1)
				r = buf_printf(both[j], "from=\"10.%d.0.0/16\",no-pty ecdsa-sha2-nistp256 %s\r\n",
					       i % 256, P256_B64);
			else
				r = buf_printf(both[j], "# comment %d\n", i);
			assert_int_equal(r, 0);
		}
	}
	return n_p256;
}

static void test_big_file(void **state)
{
	(void)state;
	_cleanup_buf_ struct buf in = { 0 };
	_cleanup_buf_ struct buf expect = { 0 };
	int n_p256 = build_big(&in, &expect);
	struct pubkey ed = key_of(ED);
	struct pubkey p256 = key_of(P256);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct authkeys *ak = parse_mem(in.data, in.len);
	struct pubkey *removed = NULL;
	size_t n_removed = 0;
	assert_int_equal(authkeys_remove_managed(ak, NULL, &removed, &n_removed), 0);
	assert_int_equal(authkeys_add(ak, "kp1", TASK, &ed), 0);
	bool had = authkeys_has_key(ak, &p256);
	char *out = NULL;
	size_t out_len = 0;
	assert_int_equal(authkeys_serialise(ak, &out, &out_len), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("10,000 lines: parse, remove managed, add, serialise: %.2f ms\n",
		      elapsed_ms(&t0, &t1));

	assert_true(had);
	assert_int_equal(n_removed, 100);
	assert_int_equal(buf_puts(&expect, MARKER_ED), 0);
	assert_int_equal(buf_printf(&expect, "ssh-ed25519 %s test-ed25519@example\n", ED_B64), 0);
	assert_int_equal(out_len, expect.len);
	assert_memory_equal(out, expect.data, out_len);
	free(out);

	/* Removing a key held on a third of the lines stays linear too. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(authkeys_remove_key(ak, &p256), n_p256);
	assert_int_equal(authkeys_serialise(ak, &out, &out_len), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("10,000 lines: remove_key of %d lines, serialise: %.2f ms\n",
		      n_p256, elapsed_ms(&t0, &t1));
	assert_null(memmem(out, out_len, P256_B64, strlen(P256_B64)));
	free(out);

	for (size_t i = 0; i < n_removed; i++) {
		assert_string_equal(removed[i].fingerprint, ED2_FP);
		pubkey_free(&removed[i]);
	}
	free(removed);
	authkeys_free(ak);
	pubkey_free(&ed);
	pubkey_free(&p256);
}

static char *edit_text(struct authkeys *ak)
{
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(authkeys_serialise(ak, &out, &len), 0);
	return out;
}

#define ED_LINE "ssh-ed25519 " ED_B64 " test-ed25519@example"
#define ED2_LINE "ssh-ed25519 " ED2_B64 " second"

/* key_expires_at: the expiry-time option on the key line, read back by
 * list and by the sweep; the marker stays as it was. */
static void test_expiring_entries(void **state)
{
	struct pubkey a = { 0 }, b = { 0 };
	struct authkeys *ak = NULL;
	struct authkeys_entry *e = NULL;
	size_t n = 0;
	(void)state;
	assert_int_equal(pubkey_parse(ED, strlen(ED), &a), 0);
	assert_int_equal(pubkey_parse(ED2, strlen(ED2), &b), 0);
	const char *admin = "no-pty,expiry-time=\"20200101\" " ED_LINE "\n";
	assert_int_equal(authkeys_parse(admin, strlen(admin), &ak), 0);
	assert_int_equal(authkeys_add_expiring(ak, "kp1", "t-1", &a, 1798675200), 0);
	assert_int_equal(authkeys_add_expiring(ak, "kp2", "t-1", &b, 0), 0);
	assert_int_equal(authkeys_add_expiring(ak, "kp3", "t-1", &b, -5), -EINVAL);
	assert_int_equal(authkeys_add_expiring(ak, "kp3", "t-1", &b, 253402300800), -EINVAL);
	char *text = edit_text(ak);
	assert_string_equal(text, "no-pty,expiry-time=\"20200101\" " ED_LINE "\n"
			    "# kps-agent: keypair=kp1 task=t-1 " ED_FP "\n"
			    "expiry-time=\"20261231000000Z\" " ED_LINE "\n"
			    "# kps-agent: keypair=kp2 task=t-1 " ED2_FP "\n" ED2_LINE "\n");
	authkeys_free(ak);

	/* Read back from the text: the admin's line is not managed. */
	assert_int_equal(authkeys_parse(text, strlen(text), &ak), 0);
	assert_int_equal(authkeys_managed(ak, &e, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(e[0].keypair, "kp1");
	assert_string_equal(e[0].task_id, "t-1");
	assert_string_equal(e[0].fingerprint, ED_FP);
	assert_int_equal(e[0].expires, 1798675200);
	assert_int_equal(e[1].expires, 0);
	authkeys_entries_free(e, n);

	/* Not yet: nothing goes. At the instant: kp1 goes, the rest stays. */
	assert_int_equal(authkeys_remove_expired(ak, 1798675199, &e, &n), 0);
	authkeys_entries_free(e, n);
	assert_int_equal(authkeys_remove_expired(ak, 1798675200, &e, &n), 1);
	assert_int_equal(n, 1);
	assert_string_equal(e[0].keypair, "kp1");
	authkeys_entries_free(e, n);
	char *after = edit_text(ak);
	assert_string_equal(after, "no-pty,expiry-time=\"20200101\" " ED_LINE "\n"
			    "# kps-agent: keypair=kp2 task=t-1 " ED2_FP "\n" ED2_LINE "\n");
	free(after);
	authkeys_free(ak);
	free(text);
	pubkey_free(&a);
	pubkey_free(&b);
}

static void test_expiry_parse(void **state)
{
	int64_t t = 0;
	(void)state;
	assert_int_equal(authkeys_expiry_parse("20261231000000Z", 15, &t), 0);
	assert_int_equal(t, 1798675200);
	assert_int_equal(authkeys_expiry_parse("202612310000Z", 13, &t), 0);
	assert_int_equal(t, 1798675200);
	assert_int_equal(authkeys_expiry_parse("20261231Z", 9, &t), 0);
	assert_int_equal(t, 1798675200);
	static const char *const bad[] = { "", "Z", "2026123100", "20261331000000Z", "2026123100000aZ",
					   "19691231000000Z", "20261231250000Z", "202612310000000Z" };
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(authkeys_expiry_parse(bad[i], strlen(bad[i]), &t), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_shapes),
		cmocka_unit_test(test_noop_edits_keep_bytes),
		cmocka_unit_test(test_add_then_remove_is_identity),
		cmocka_unit_test(test_add_to_empty),
		cmocka_unit_test(test_add_to_unterminated),
		cmocka_unit_test(test_add_survives_reparse),
		cmocka_unit_test(test_add_refuses_bad_names),
		cmocka_unit_test(test_remove_managed_all),
		cmocka_unit_test(test_remove_managed_by_name),
		cmocka_unit_test(test_remove_managed_stale_marker),
		cmocka_unit_test(test_remove_managed_stale_other_name_kept),
		cmocka_unit_test(test_remove_managed_variants),
		cmocka_unit_test(test_remove_key),
		cmocka_unit_test(test_nul_ends_line),
		cmocka_unit_test(test_has_key),
		cmocka_unit_test(test_pubkey_parse_types),
		cmocka_unit_test(test_pubkey_parse_separators),
		cmocka_unit_test(test_pubkey_parse_refusals),
		cmocka_unit_test(test_pubkey_parse_length),
		cmocka_unit_test(test_pubkey_equal),
		cmocka_unit_test(test_pubkey_fingerprint_keygen),
		cmocka_unit_test(test_pubkey_as_libssh),
		cmocka_unit_test(test_big_file),
		cmocka_unit_test(test_expiring_entries),
		cmocka_unit_test(test_expiry_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
