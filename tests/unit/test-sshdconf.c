/* sshdconf: the managed block and the Port lines, against texts shaped like
 * the ones found on real machines, and against the real sshd when there is
 * one. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <strings.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "sshdconf.h"

#define S(lit) (lit), (sizeof(lit) - 1)
#define SSHD "/usr/sbin/sshd"
#define BEGIN_L SSHDCONF_BEGIN "\n"
#define END_L SSHDCONF_END "\n"
#define BLOCK_NO_2222 BEGIN_L "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPort 2222\n" END_L

static const struct sshdconf_block EMPTY = { -1, -1, { 0 }, 0, "" };
static const struct sshdconf_block NO_2222 = { 0, 0, { 2222 }, 1, "" };
static const struct sshdconf_block PW_ONLY = { 1, -1, { 0 }, 0, "" };

/* Debian bookworm's stock /etc/ssh/sshd_config (openssh-server 1:9.2p1). */
static const char DEBIAN[] =
	"\n"
	"# This is the sshd server system-wide configuration file.  See\n"
	"# sshd_config(5) for more information.\n"
	"\n"
	"# This sshd was compiled with PATH=/usr/local/bin:/usr/bin:/bin:/usr/games\n"
	"\n"
	"# The strategy used for options in the default sshd_config shipped with\n"
	"# OpenSSH is to specify options with their default value where\n"
	"# possible, but leave them commented.  Uncommented options override the\n"
	"# default value.\n"
	"\n"
	"Include /etc/ssh/sshd_config.d/*.conf\n"
	"\n"
	"#Port 22\n"
	"#AddressFamily any\n"
	"#ListenAddress 0.0.0.0\n"
	"#ListenAddress ::\n"
	"\n"
	"#HostKey /etc/ssh/ssh_host_rsa_key\n"
	"#HostKey /etc/ssh/ssh_host_ecdsa_key\n"
	"#HostKey /etc/ssh/ssh_host_ed25519_key\n"
	"\n"
	"# Ciphers and keying\n"
	"#RekeyLimit default none\n"
	"\n"
	"# Logging\n"
	"#SyslogFacility AUTH\n"
	"#LogLevel INFO\n"
	"\n"
	"# Authentication:\n"
	"\n"
	"#LoginGraceTime 2m\n"
	"#PermitRootLogin prohibit-password\n"
	"#StrictModes yes\n"
	"#MaxAuthTries 6\n"
	"#MaxSessions 10\n"
	"\n"
	"#PubkeyAuthentication yes\n"
	"\n"
	"# Expect .ssh/authorized_keys2 to be disregarded by default in future.\n"
	"#AuthorizedKeysFile\t.ssh/authorized_keys .ssh/authorized_keys2\n"
	"\n"
	"#AuthorizedPrincipalsFile none\n"
	"\n"
	"#AuthorizedKeysCommand none\n"
	"#AuthorizedKeysCommandUser nobody\n"
	"\n"
	"# For this to work you will also need host keys in /etc/ssh/ssh_known_hosts\n"
	"#HostbasedAuthentication no\n"
	"# Change to yes if you don't trust ~/.ssh/known_hosts for\n"
	"# HostbasedAuthentication\n"
	"#IgnoreUserKnownHosts no\n"
	"# Don't read the user's ~/.rhosts and ~/.shosts files\n"
	"#IgnoreRhosts yes\n"
	"\n"
	"# To disable tunneled clear text passwords, change to no here!\n"
	"#PasswordAuthentication yes\n"
	"#PermitEmptyPasswords no\n"
	"\n"
	"# Change to yes to enable challenge-response passwords (beware issues with\n"
	"# some PAM modules and threads)\n"
	"KbdInteractiveAuthentication no\n"
	"\n"
	"# Kerberos options\n"
	"#KerberosAuthentication no\n"
	"#KerberosOrLocalPasswd yes\n"
	"#KerberosTicketCleanup yes\n"
	"#KerberosGetAFSToken no\n"
	"\n"
	"# GSSAPI options\n"
	"#GSSAPIAuthentication no\n"
	"#GSSAPICleanupCredentials yes\n"
	"#GSSAPIStrictAcceptorCheck yes\n"
	"#GSSAPIKeyExchange no\n"
	"\n"
	"# Set this to 'yes' to enable PAM authentication, account processing,\n"
	"# and session processing. If this is enabled, PAM authentication will\n"
	"# be allowed through the KbdInteractiveAuthentication and\n"
	"# PasswordAuthentication.  Depending on your PAM configuration,\n"
	"# PAM authentication via KbdInteractiveAuthentication may bypass\n"
	"# the setting of \"PermitRootLogin prohibit-password\".\n"
	"# If you just want the PAM account and session checks to run without\n"
	"# PAM authentication, then enable this but set PasswordAuthentication\n"
	"# and KbdInteractiveAuthentication to 'no'.\n"
	"UsePAM yes\n"
	"\n"
	"#AllowAgentForwarding yes\n"
	"#AllowTcpForwarding yes\n"
	"#GatewayPorts no\n"
	"X11Forwarding yes\n"
	"#X11DisplayOffset 10\n"
	"#X11UseLocalhost yes\n"
	"#PermitTTY yes\n"
	"PrintMotd no\n"
	"#PrintLastLog yes\n"
	"#TCPKeepAlive yes\n"
	"#PermitUserEnvironment no\n"
	"#Compression delayed\n"
	"#ClientAliveInterval 0\n"
	"#ClientAliveCountMax 3\n"
	"#UseDNS no\n"
	"#PidFile /run/sshd.pid\n"
	"#MaxStartups 10:30:100\n"
	"#PermitTunnel no\n"
	"#ChrootDirectory none\n"
	"#VersionAddendum none\n"
	"\n"
	"# no default banner path\n"
	"#Banner none\n"
	"\n"
	"# Allow client to pass locale environment variables\n"
	"AcceptEnv LANG LC_*\n"
	"\n"
	"# override default of no subsystems\n"
	"Subsystem\tsftp\t/usr/lib/openssh/sftp-server\n"
	"\n"
	"# Example of overriding settings on a per-user basis\n"
	"#Match User anoncvs\n"
	"#\tX11Forwarding no\n"
	"#\tAllowTcpForwarding no\n"
	"#\tPermitTTY no\n"
	"#\tForceCommand cvs server\n";

struct text {
	const char *p;
	size_t len;
};

/* Texts with the shapes that break editors: nothing, no final newline,
 * CRLF, a lone CR, NUL bytes, invalid UTF-8, Match, Include first. */
static const struct text CORPUS[] = {
	{ S("") },
	{ S("\n") },
	{ S("\r") },
	{ S("\r\n\r\n") },
	{ S("# only a comment") },
	{ S("# only a comment\n") },
	{ S("  \t\n# c\n\f\n") },
	{ S("Port 22") },
	{ S("Port 22\nport=2200\n  PORT = 2201\nPort\t2202\r\n") },
	{ S("# c\r\n\r\nPort 22\r\nUsePAM yes\r\nMatch User x\r\n\tPasswordAuthentication yes\r\n") },
	{ S("Include /etc/ssh/sshd_config.d/*.conf\nPort 22\n") },
	{ S("UsePAM yes\nMatch User x\n  Port 23\nMatch all\nPort 24") },
	{ S("#\xff\xfe\x80 bad utf-8\nBanner /etc/i\xc3\x28ssue\nPort\x00 22\n\x00\nPort 2\x00") },
	{ DEBIAN, sizeof(DEBIAN) - 1 },
};

static const struct sshdconf_block BLOCKS[] = {
	{ 0, 0, { 2222 }, 1, "" },
	{ 1, -1, { 0 }, 0, "" },
	{ -1, 0, { 0 }, 0, "" },
	{ -1, -1, { 22, 2222, 65535 }, 3, "" },
	{ 0, 1, { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }, 16, "" },
};

static void assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len)
{
	if (got_len != want_len || memcmp(got, want, want_len) != 0)
		fail_msg("got %zu bytes:\n%.*s\n--- want %zu bytes:\n%.*s", got_len, (int)got_len, got,
			 want_len, (int)want_len, want);
	assert_int_equal(got[got_len], '\0');
}

static void assert_block_equal(const struct sshdconf_block *a, const struct sshdconf_block *b)
{
	assert_int_equal(a->password, b->password);
	assert_int_equal(a->kbdinteractive, b->kbdinteractive);
	assert_int_equal(a->n_ports, b->n_ports);
	for (size_t i = 0; i < a->n_ports; i++)
		assert_int_equal(a->ports[i], b->ports[i]);
}

static char *write_ok(const char *text, size_t len, const struct sshdconf_block *b, size_t *ret_len)
{
	char *out = NULL;
	assert_int_equal(sshdconf_block_write(text, len, b, &out, ret_len), 0);
	assert_non_null(out);
	return out;
}

static void assert_write(const char *text, size_t len, const struct sshdconf_block *b, const char *want,
			 size_t want_len)
{
	size_t n;
	_cleanup_free_ char *out = write_ok(text, len, b, &n);
	assert_bytes(out, n, want, want_len);
}

static void assert_read(const char *text, size_t len, const struct sshdconf_block *want)
{
	struct sshdconf_block b = { 7, 7, { 7 }, 7, "" };
	assert_int_equal(sshdconf_block_read(text, len, &b), 0);
	assert_block_equal(&b, want);
}

static void assert_disable(const char *text, size_t len, const char *want, size_t want_len, bool want_changed)
{
	_cleanup_free_ char *out = NULL;
	size_t n;
	bool changed = !want_changed;
	assert_int_equal(sshdconf_disable_ports(text, len, &out, &n, &changed), 0);
	assert_bytes(out, n, want, want_len);
	assert_int_equal(changed, want_changed);
}

/* Write, read back, remove: the block says what was written and removing it
 * gives the text back byte for byte. */
static void assert_round_trip(const char *text, size_t len, const struct sshdconf_block *b)
{
	size_t n, m;
	_cleanup_free_ char *with = write_ok(text, len, b, &n);
	assert_read(with, n, b);
	assert_read(text, len, &EMPTY);
	_cleanup_free_ char *again = write_ok(with, n, b, &m);
	assert_bytes(again, m, with, n);
	_cleanup_free_ char *without = write_ok(with, n, &EMPTY, &m);
	assert_bytes(without, m, text, len);
}

static void test_debian_stock(void **state)
{
	(void)state;
	const char *inc = strstr(DEBIAN, "\nInclude ") + 1;
	size_t before = (size_t)(inc - DEBIAN);
	_cleanup_free_ char *want = NULL;
	size_t want_len;
	FILE *f = open_memstream(&want, &want_len);
	assert_non_null(f);
	fprintf(f, "%.*s%s%s", (int)before, DEBIAN, BLOCK_NO_2222, inc);
	assert_int_equal(fclose(f), 0);

	assert_read(S(DEBIAN), &EMPTY);
	assert_write(S(DEBIAN), &NO_2222, want, want_len);
	assert_round_trip(S(DEBIAN), &NO_2222);
	assert_round_trip(S(DEBIAN), &PW_ONLY);
	assert_disable(S(DEBIAN), S(DEBIAN), false);
}

static void test_insert_empty(void **state)
{
	(void)state;
	assert_write(S(""), &NO_2222, S(BLOCK_NO_2222));
	assert_write(NULL, 0, &NO_2222, S(BLOCK_NO_2222));
	assert_write(S(""), &EMPTY, S(""));
	assert_round_trip(S(""), &NO_2222);
}

static void test_insert_comment_only(void **state)
{
	(void)state;
	assert_write(S("# a\n\n# b\n"), &NO_2222, S("# a\n\n# b\n" BLOCK_NO_2222));
	assert_round_trip(S("# a\n\n# b\n"), &NO_2222);
	/* The unterminated last line gets its newline; the block, none. */
	assert_write(S("# a\n# b"), &PW_ONLY, S("# a\n# b\n" BEGIN_L "PasswordAuthentication yes\n" SSHDCONF_END));
	assert_round_trip(S("# a\n# b"), &PW_ONLY);
	assert_round_trip(S("# a\r"), &NO_2222);
	/* Replacing an appended block keeps the removal exact. */
	size_t n, m, k;
	_cleanup_free_ char *a = write_ok(S("# a\n# b"), &PW_ONLY, &n);
	_cleanup_free_ char *b = write_ok(a, n, &NO_2222, &m);
	assert_bytes(b, m, S("# a\n# b\n" BEGIN_L "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
				 "Port 2222\n" SSHDCONF_END));
	_cleanup_free_ char *c = write_ok(b, m, &EMPTY, &k);
	assert_bytes(c, k, S("# a\n# b"));
}

static void test_insert_after_leading_comments(void **state)
{
	(void)state;
	assert_write(S("# head\n\n  # indented\n\t\nUsePAM yes\n# tail\nX11Forwarding yes\n"), &PW_ONLY,
		     S("# head\n\n  # indented\n\t\n" BEGIN_L "PasswordAuthentication yes\n" END_L
		       "UsePAM yes\n# tail\nX11Forwarding yes\n"));
	/* An indented directive is a directive. */
	assert_write(S("# c\n   UsePAM yes\n"), &PW_ONLY,
		     S("# c\n" BEGIN_L "PasswordAuthentication yes\n" END_L "   UsePAM yes\n"));
}

static void test_insert_before_include(void **state)
{
	(void)state;
	assert_write(S("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n"), &NO_2222,
		     S(BLOCK_NO_2222 "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n"));
}

static void test_insert_before_match(void **state)
{
	(void)state;
	const char text[] = "# c\nMatch User x\n\tPasswordAuthentication yes\n\tPort 23\nMatch all\n";
	assert_write(S(text), &NO_2222,
		     S("# c\n" BLOCK_NO_2222 "Match User x\n\tPasswordAuthentication yes\n\tPort 23\nMatch all\n"));
	assert_round_trip(S(text), &NO_2222);
}

static void test_replace_in_place(void **state)
{
	(void)state;
	const char text[] = "# c\n" BLOCK_NO_2222 "UsePAM yes\n" SSHDCONF_DISABLED "Port 22\n";
	assert_read(S(text), &NO_2222);
	const struct sshdconf_block b = { 1, 1, { 22, 443 }, 2, "" };
	assert_write(S(text), &b,
		     S("# c\n" BEGIN_L "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\nPort 22\n"
		       "Port 443\n" END_L "UsePAM yes\n" SSHDCONF_DISABLED "Port 22\n"));
	/* A block a human moved stays where it is. */
	const char moved[] = "UsePAM yes\n" BLOCK_NO_2222 "# c\n";
	assert_write(S(moved), &PW_ONLY, S("UsePAM yes\n" BEGIN_L "PasswordAuthentication yes\n" END_L "# c\n"));
	/* CRLF or indented markers are still the block; the new one uses "\n". */
	const char crlf[] = "  " SSHDCONF_BEGIN "\r\nPort 22\r\n" SSHDCONF_END " \r\nUsePAM yes\r\n";
	const struct sshdconf_block p22 = { -1, -1, { 22 }, 1, "" };
	assert_read(S(crlf), &p22);
	assert_write(S(crlf), &PW_ONLY, S(BEGIN_L "PasswordAuthentication yes\n" END_L "UsePAM yes\r\n"));
}

static void test_remove_gives_original(void **state)
{
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(CORPUS); i++)
		for (size_t j = 0; j < ELEMENTSOF(BLOCKS); j++)
			assert_round_trip(CORPUS[i].p, CORPUS[i].len, &BLOCKS[j]);
	/* Through several writes in a row too. */
	size_t n, m, k;
	_cleanup_free_ char *a = write_ok(S(DEBIAN), &BLOCKS[3], &n);
	_cleanup_free_ char *b = write_ok(a, n, &BLOCKS[1], &m);
	_cleanup_free_ char *c = write_ok(b, m, &EMPTY, &k);
	assert_bytes(c, k, S(DEBIAN));
}

/* What sshd makes of a main text with its Include expanded in place: the
 * first value of a keyword and every Port line, up to the first Match. */
struct effective {
	char password[64];
	int ports[32];
	size_t n_ports;
};

static void effective_line(const char *line, struct effective *e)
{
	char kw[64] = "", val[64] = "";
	if (sscanf(line, " %63[^ \t=] %*[=]%63s", kw, val) < 2 && sscanf(line, " %63[^ \t=] %63s", kw, val) < 2)
		return;
	if (kw[0] == '#')
		return;
	if (strcasecmp(kw, "PasswordAuthentication") == 0 && !e->password[0])
		snprintf(e->password, sizeof(e->password), "%s", val);
	if (strcasecmp(kw, "Port") == 0 && e->n_ports < ELEMENTSOF(e->ports))
		e->ports[e->n_ports++] = atoi(val);
}

static struct effective effective_of(const char *main_text, const char *included)
{
	struct effective e = { 0 };
	_cleanup_free_ char *copy = strdup(main_text);
	assert_non_null(copy);
	for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char kw[16] = "";
		sscanf(l, " %15s", kw);
		if (strcasecmp(kw, "Match") == 0)
			break;
		if (strcasecmp(kw, "Include") != 0) {
			effective_line(l, &e);
			continue;
		}
		_cleanup_free_ char *inc = strdup(included);
		assert_non_null(inc);
		for (char *s2 = NULL, *m = strtok_r(inc, "\n", &s2); m; m = strtok_r(NULL, "\n", &s2))
			effective_line(m, &e);
	}
	return e;
}

static void test_first_value_wins(void **state)
{
	(void)state;
	const char main_text[] = "# main\nPort 22\nInclude /etc/ssh/sshd_config.d/*.conf\n"
				 "PasswordAuthentication yes\nPort 2200\nMatch User x\n\tPasswordAuthentication yes\n";
	const char drop_in[] = "PasswordAuthentication yes\nPort 2201\n";

	struct effective before = effective_of(main_text, drop_in);
	assert_string_equal(before.password, "yes");
	assert_int_equal(before.n_ports, 3);

	size_t n, m;
	bool changed;
	const struct sshdconf_block b = { 0, 0, { 2022, 2023 }, 2, "" };
	_cleanup_free_ char *edited = write_ok(S(main_text), &b, &n);
	_cleanup_free_ char *inc = NULL;
	assert_int_equal(sshdconf_disable_ports(S(drop_in), &inc, &m, &changed), 0);
	assert_true(changed);

	struct effective after = effective_of(edited, inc);
	assert_string_equal(after.password, "no");
	assert_int_equal(after.n_ports, 2);
	assert_int_equal(after.ports[0], 2022);
	assert_int_equal(after.ports[1], 2023);
	/* The block comes before every directive, Include among them. */
	assert_ptr_equal(strstr(edited, SSHDCONF_BEGIN), edited + strlen("# main\n"));
}

static void test_ports_disabled(void **state)
{
	(void)state;
	const char main_text[] = "# c\nPort 22\nUsePAM yes\nPort 2200\n";
	assert_write(S(main_text), &NO_2222,
		     S("# c\n" BLOCK_NO_2222 SSHDCONF_DISABLED "Port 22\nUsePAM yes\n" SSHDCONF_DISABLED
		       "Port 2200\n"));
	/* Without ports in the block, the file's own Port lines stay. */
	assert_write(S(main_text), &PW_ONLY,
		     S("# c\n" BEGIN_L "PasswordAuthentication yes\n" END_L "Port 22\nUsePAM yes\nPort 2200\n"));
	/* Ports taken out of the block: the file's own lines apply again. */
	size_t n;
	_cleanup_free_ char *with = write_ok(S(main_text), &NO_2222, &n);
	assert_write(with, n, &PW_ONLY,
		     S("# c\n" BEGIN_L "PasswordAuthentication yes\n" END_L "Port 22\nUsePAM yes\nPort 2200\n"));

	assert_disable(S("Port 22\nPort 2222\n"), S(SSHDCONF_DISABLED "Port 22\n" SSHDCONF_DISABLED "Port 2222\n"),
		       true);
	/* Already disabled lines are comments: disabling twice changes nothing. */
	assert_disable(S(SSHDCONF_DISABLED "Port 22\n"), S(SSHDCONF_DISABLED "Port 22\n"), false);
}

static void test_port_spellings(void **state)
{
	(void)state;
	const char text[] = "  port=22\nPort\t2222\n\tPORT = 1\nPort= 2\nPorts 3\nPortX 4\n#Port 5\n  # Port 6\n"
			    "ListenAddress 0.0.0.0:22\nport\n";
	assert_disable(S(text),
		       S(SSHDCONF_DISABLED "  port=22\n" SSHDCONF_DISABLED "Port\t2222\n" SSHDCONF_DISABLED
			 "\tPORT = 1\n" SSHDCONF_DISABLED "Port= 2\nPorts 3\nPortX 4\n#Port 5\n  # Port 6\n"
			 "ListenAddress 0.0.0.0:22\n" SSHDCONF_DISABLED "port\n"),
		       true);
}

static void test_port_in_match_left(void **state)
{
	(void)state;
	const char text[] = "Port 22\nMatch User x\n  Port 23\nMatch all\nPort 24\n";
	assert_disable(S(text), S(SSHDCONF_DISABLED "Port 22\nMatch User x\n  Port 23\nMatch all\nPort 24\n"), true);
	assert_disable(S("match Address 10.0.0.0/8\nPort 22\n"), S("match Address 10.0.0.0/8\nPort 22\n"), false);
	/* Lines the agent disabled inside a Match are not its own to restore. */
	const char dis[] = "Match all\n" SSHDCONF_DISABLED "Port 22\n";
	assert_write(S(dis), &PW_ONLY, S(BEGIN_L "PasswordAuthentication yes\n" END_L "Match all\n" SSHDCONF_DISABLED
					  "Port 22\n"));
}

static void test_crlf(void **state)
{
	(void)state;
	const char text[] = "# c\r\nPort 22\r\nUsePAM yes\r\n";
	assert_write(S(text), &NO_2222, S("# c\r\n" BLOCK_NO_2222 SSHDCONF_DISABLED "Port 22\r\nUsePAM yes\r\n"));
	assert_disable(S("Port 22\r\nPort 23"), S(SSHDCONF_DISABLED "Port 22\r\n" SSHDCONF_DISABLED "Port 23"), true);
	assert_round_trip(S(text), &NO_2222);
}

static void test_missing_final_newline(void **state)
{
	(void)state;
	assert_write(S("UsePAM yes\nPort 22"), &NO_2222, S(BLOCK_NO_2222 "UsePAM yes\n" SSHDCONF_DISABLED "Port 22"));
	assert_disable(S("Port 22"), S(SSHDCONF_DISABLED "Port 22"), true);
	assert_round_trip(S("UsePAM yes\nPort 22"), &NO_2222);
}

static void test_bytes_kept(void **state)
{
	(void)state;
	const char text[] = "# Comment  with  spaces \t\n\n\t  # indented comment\n  UsePAM   yes  \n"
			    "Banner \xff\xfe\x00/etc/issue\n\x00\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server";
	assert_write(S(text), &PW_ONLY,
		     S("# Comment  with  spaces \t\n\n\t  # indented comment\n" BEGIN_L "PasswordAuthentication yes\n"
		       END_L "  UsePAM   yes  \n"
		       "Banner \xff\xfe\x00/etc/issue\n\x00\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server"));
	assert_disable(S(text), S(text), false);
	/* A NUL ends what sshd sees of a line: "Port\0" is a Port line. */
	assert_disable(S("Port\x00 x\n"), S(SSHDCONF_DISABLED "Port\x00 x\n"), true);
}

static void test_block_read_values(void **state)
{
	(void)state;
	const struct sshdconf_block want = { 1, 0, { 22, 65535, 1 }, 3, "" };
	assert_read(S(BEGIN_L "passwordauthentication=YES\n  KBDINTERACTIVEAUTHENTICATION  No \nPort = 22\n"
		      "port\t65535\nPort 1\n" END_L),
		    &want);
	assert_read(S("# nothing here\nPort 22\n"), &EMPTY);
	assert_read(S(BEGIN_L END_L), &EMPTY);
	const struct sshdconf_block ports16 = BLOCKS[4];
	size_t n;
	_cleanup_free_ char *out = write_ok(S(""), &ports16, &n);
	assert_read(out, n, &ports16);
}

static void test_damaged_blocks(void **state)
{
	(void)state;
	static const struct text bad[] = {
		{ S(BEGIN_L "Port 22\n") },
		{ S("Port 22\n" END_L) },
		{ S(BEGIN_L BEGIN_L END_L) },
		{ S(BEGIN_L END_L END_L) },
		{ S(BEGIN_L END_L "# c\n" BEGIN_L END_L) },
		{ S(BEGIN_L "UsePAM yes\n" END_L) },
		{ S(BEGIN_L "\n" END_L) },
		{ S(BEGIN_L "# c\n" END_L) },
		{ S(BEGIN_L "PasswordAuthentication maybe\n" END_L) },
		{ S(BEGIN_L "PasswordAuthentication\n" END_L) },
		{ S(BEGIN_L "PasswordAuthentication yes no\n" END_L) },
		{ S(BEGIN_L "PasswordAuthentication yes\nPasswordAuthentication no\n" END_L) },
		{ S(BEGIN_L "KbdInteractiveAuthentication no\nKbdInteractiveAuthentication no\n" END_L) },
		{ S(BEGIN_L "ChallengeResponseAuthentication no\n" END_L) },
		{ S(BEGIN_L "Port 0\n" END_L) },
		{ S(BEGIN_L "Port 65536\n" END_L) },
		{ S(BEGIN_L "Port 99999\n" END_L) },
		{ S(BEGIN_L "Port 22x\n" END_L) },
		{ S(BEGIN_L "Port -22\n" END_L) },
		{ S(BEGIN_L "Port +22\n" END_L) },
		{ S(BEGIN_L "Port 0x16\n" END_L) },
		{ S(BEGIN_L "Port 22 23\n" END_L) },
		{ S(BEGIN_L "Port 22\nPort 22\n" END_L) },
		{ S(BEGIN_L "Port 22\x00\n" END_L) },
		{ S(BEGIN_L "Port==22\n" END_L) },
		{ S(BEGIN_L "Port 1\nPort 2\nPort 3\nPort 4\nPort 5\nPort 6\nPort 7\nPort 8\nPort 9\nPort 10\n"
		    "Port 11\nPort 12\nPort 13\nPort 14\nPort 15\nPort 16\nPort 17\n" END_L) },
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		struct sshdconf_block b = NO_2222;
		char *out = NULL;
		bool changed;
		assert_int_equal(sshdconf_block_read(bad[i].p, bad[i].len, &b), -EBADMSG);
		assert_block_equal(&b, &NO_2222);
		assert_int_equal(sshdconf_block_write(bad[i].p, bad[i].len, &PW_ONLY, &out, NULL), -EBADMSG);
		assert_null(out);
		if (i < 5)
			assert_int_equal(sshdconf_disable_ports(bad[i].p, bad[i].len, &out, NULL, &changed),
					 -EBADMSG);
		assert_null(out);
	}
}

static void test_invalid_struct(void **state)
{
	(void)state;
	static const struct sshdconf_block bad[] = {
		{ 2, -1, { 0 }, 0, "" },
		{ -2, -1, { 0 }, 0, "" },
		{ -1, 5, { 0 }, 0, "" },
		{ -1, -1, { 0 }, 1, "" },
		{ -1, -1, { 65536 }, 1, "" },
		{ -1, -1, { -22 }, 1, "" },
		{ -1, -1, { 22, 22 }, 2, "" },
		{ -1, -1, { 22 }, SSHDCONF_MAX_PORTS + 1, "" },
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *out = NULL;
		assert_int_equal(sshdconf_block_write(S("Port 22\n"), &bad[i], &out, NULL), -EINVAL);
		assert_null(out);
	}
}

static void test_includes(void **state)
{
	(void)state;
	const char text[] = "Include /etc/ssh/sshd_config.d/*.conf\n"
			    "include \"/a b/*.conf\" /c/d.conf\n"
			    "  INCLUDE=/e/f.conf   # trailing comment\n"
			    "#Include /not/me\n"
			    "  # Include /nor/me\n"
			    "IncludeX /nor/this\n"
			    "Include 'x y' a\\ b \"q\\\"q\" c\\d\r\n"
			    "Include /g ''\n"
			    "Match User x\n"
			    "\tInclude\t/m/*.conf";
	static const char *const want[] = { "first", "/etc/ssh/sshd_config.d/*.conf", "/a b/*.conf", "/c/d.conf",
					    "/e/f.conf", "x y", "a b", "q\"q", "c\\d", "/g", "", "/m/*.conf" };
	_cleanup_strv_ struct strv out = { 0 };
	assert_int_equal(strv_push(&out, "first"), 0);
	assert_int_equal(sshdconf_includes(S(text), &out), 0);
	assert_int_equal(out.n, ELEMENTSOF(want));
	for (size_t i = 0; i < out.n; i++)
		assert_string_equal(out.v[i], want[i]);
	assert_null(out.v[out.n]);

	_cleanup_strv_ struct strv none = { 0 };
	assert_int_equal(sshdconf_includes(S("# Include /x\nPort 22\n"), &none), 0);
	assert_int_equal(none.n, 0);
}

static void test_includes_invalid(void **state)
{
	(void)state;
	static const struct text bad[] = {
		{ S("Include /a.conf\nInclude \"/b\n") },
		{ S("Include 'x\n") },
		{ S("Include\n") },
		{ S("Include   # nothing\n") },
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		_cleanup_strv_ struct strv out = { 0 };
		assert_int_equal(strv_push(&out, "kept"), 0);
		assert_int_equal(sshdconf_includes(bad[i].p, bad[i].len, &out), -EBADMSG);
		assert_int_equal(out.n, 1);
		assert_string_equal(out.v[0], "kept");
	}
}

/* The real sshd: with a drop-in that says otherwise and Port lines all over,
 * `sshd -T` reports the block's values and only the block's ports. */
struct sshd_effective {
	char password[64];
	char kbd[64];
	int ports[8];
	size_t n_ports;
};

static int write_file(const char *path, const char *data, size_t len)
{
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	size_t n = fwrite(data, 1, len, f);
	if (fclose(f) != 0 || n != len)
		return -EIO;
	return 0;
}

static bool sshd_effective(const char *config, const char *user, struct sshd_effective *e)
{
	char cmd[512], line[512];
	_cleanup_buf_ struct buf all = { 0 };

	snprintf(cmd, sizeof(cmd), SSHD " -T -f %s -C user=%s,host=localhost,addr=127.0.0.1 2>&1", config, user);
	FILE *p = popen(cmd, "re");
	if (!p)
		return false;
	*e = (struct sshd_effective){ 0 };
	while (fgets(line, sizeof(line), p)) {
		char val[64];
		assert_int_equal(buf_puts(&all, line), 0);
		/* OpenSSH 10.4+ prints keywords in mixed case (PasswordAuthentication). */
		for (char *c = line; *c && *c != ' '; c++)
			*c = (char)tolower((unsigned char)*c);
		if (sscanf(line, "passwordauthentication %63s", val) == 1)
			snprintf(e->password, sizeof(e->password), "%s", val);
		if (sscanf(line, "kbdinteractiveauthentication %63s", val) == 1)
			snprintf(e->kbd, sizeof(e->kbd), "%s", val);
		if (sscanf(line, "port %63s", val) == 1 && e->n_ports < ELEMENTSOF(e->ports))
			e->ports[e->n_ports++] = atoi(val);
	}
	if (pclose(p) == 0)
		return true;
	print_message("%s failed:\n%s", cmd, all.data ? all.data : "");
	return false;
}

static void test_real_sshd(void **state)
{
	(void)state;
	char dir[] = "/tmp/test-sshdconf-XXXXXX";
	char path[256], cmd[512];

	if (access(SSHD, X_OK) < 0 || (mkdir("/run/sshd", 0755) < 0 && errno != EEXIST))
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "ssh-keygen -q -t ed25519 -N '' -f %s/hostkey >/dev/null 2>&1", dir);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		assert_int_equal(system(cmd), 0);
		skip();
	}
	snprintf(path, sizeof(path), "%s/d", dir);
	assert_int_equal(mkdir(path, 0755), 0);

	const char drop_in[] = "PasswordAuthentication yes\nKbdInteractiveAuthentication yes\n  port=2200\n";
	_cleanup_free_ char *main_text = NULL;
	assert_true(asprintf(&main_text,
			     "# main\n\nHostKey %s/hostkey\nInclude %s/d/*.conf\nPort 22\nPort\t2222\n"
			     "PasswordAuthentication yes\nMatch User x\n\tPasswordAuthentication yes\n",
			     dir, dir) > 0);
	char main_path[256];
	snprintf(main_path, sizeof(main_path), "%s/sshd_config", dir);
	snprintf(path, sizeof(path), "%s/d/50-cloud-init.conf", dir);

	struct sshd_effective e;
	assert_int_equal(write_file(main_path, main_text, strlen(main_text)), 0);
	assert_int_equal(write_file(path, S(drop_in)), 0);
	assert_true(sshd_effective(main_path, "root", &e));
	assert_string_equal(e.password, "yes");
	assert_string_equal(e.kbd, "yes");
	assert_int_equal(e.n_ports, 3);

	const struct sshdconf_block b = { 0, 0, { 2022, 2023 }, 2, "" };
	_cleanup_free_ char *edited = NULL, *inc = NULL;
	size_t n, m;
	bool changed;
	assert_int_equal(sshdconf_block_write(main_text, strlen(main_text), &b, &edited, &n), 0);
	assert_int_equal(sshdconf_disable_ports(S(drop_in), &inc, &m, &changed), 0);
	assert_int_equal(write_file(main_path, edited, n), 0);
	assert_int_equal(write_file(path, inc, m), 0);

	assert_true(sshd_effective(main_path, "root", &e));
	assert_string_equal(e.password, "no");
	assert_string_equal(e.kbd, "no");
	assert_int_equal(e.n_ports, 2);
	assert_int_equal(e.ports[0], 2022);
	assert_int_equal(e.ports[1], 2023);
	/* A Match block still overrides the block for its users: apply checks. */
	assert_true(sshd_effective(main_path, "x", &e));
	assert_string_equal(e.password, "yes");
	assert_string_equal(e.kbd, "no");

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* The penalty exemption the agent adds for its own address (OpenSSH 9.8+). */
static void test_penalty_exempt_line(void **state)
{
	(void)state;
	static const char text[] = SSHDCONF_BEGIN "\nPasswordAuthentication no\n"
				   "PerSourcePenaltyExemptList 10.0.0.0/8,127.0.0.1\n" SSHDCONF_END "\nPort 22\n";
	struct sshdconf_block b;
	assert_int_equal(sshdconf_block_read(text, sizeof(text) - 1, &b), 0);
	assert_string_equal(b.penalty_exempt, "10.0.0.0/8,127.0.0.1");
	char *out;
	size_t len;
	struct sshdconf_block only = { -1, -1, { 0 }, 0, "::1" };
	assert_int_equal(sshdconf_block_write("Port 22\n", 8, &only, &out, &len), 0);
	assert_non_null(strstr(out, SSHDCONF_BEGIN "\nPerSourcePenaltyExemptList ::1\n" SSHDCONF_END "\n"));
	free(out);
	static const char two[] = SSHDCONF_BEGIN "\nPerSourcePenaltyExemptList 127.0.0.1 10.0.0.1\n" SSHDCONF_END "\n";
	assert_int_equal(sshdconf_block_read(two, sizeof(two) - 1, &b), -EBADMSG);
	static const char odd[] = SSHDCONF_BEGIN "\nPerSourcePenaltyExemptList *\n" SSHDCONF_END "\n";
	assert_int_equal(sshdconf_block_read(odd, sizeof(odd) - 1, &b), -EBADMSG);
	struct sshdconf_block bad = { -1, -1, { 0 }, 0, "1.2.3.4 Port 1" };
	assert_int_equal(sshdconf_block_write("", 0, &bad, &out, &len), -EINVAL);
}

/* sshdconf_next: each directive as sshd reads it, in order, with its
 * line number; "want" lists "line keyword arg|arg|..." one per directive. */
static void walk_is(const char *text, size_t len, const char *const *want, size_t n_want, int last)
{
	struct sshdconf_directive d = { 0 };
	size_t pos = 0, i = 0;
	int r;
	while ((r = sshdconf_next(text, len, &pos, &d)) > 0) {
		char got[256];
		int k = snprintf(got, sizeof(got), "%u %s", d.line, d.keyword);
		for (size_t a = 0; a < d.args.n; a++)
			k += snprintf(got + k, sizeof(got) - (size_t)k, "%s%s", a ? "|" : " ", d.args.v[a]);
		assert_true(i < n_want);
		assert_string_equal(got, want[i]);
		i++;
	}
	strv_free(&d.args);
	assert_int_equal(r, last);
	assert_int_equal(i, n_want);
}

#define WALK(text, last, ...)                                                                   \
	do {                                                                                    \
		static const char *const w_[] = { __VA_ARGS__ };                              \
		walk_is(text, sizeof(text) - 1, w_, ELEMENTSOF(w_), last);                      \
	} while (0)

static void test_next_tokens(void **state)
{
	(void)state;
	/* Comments, blanks and a '#' word end nothing but the line's arguments. */
	WALK("# comment\n\n  Port 22 # trailing\n", 0, "3 Port 22");
	/* '=' with or without blanks around it; the keyword as written. */
	WALK("Port=22\nport = 23\nPORT\t=\t24\n", 0, "1 Port 22", "2 port 23", "3 PORT 24");
	/* Quotes: around the keyword they go; around an argument they keep
	 * its blanks; a backslash escapes a quote. */
	WALK("\"Include\" \"/etc/ssh/a b.conf\" c\n", 0, "1 Include /etc/ssh/a b.conf|c");
	WALK("Banner 'x y' \"a\\\"b\"\n", 0, "1 Banner x y|a\"b");
	/* CRLF, form feeds and trailing blanks are not part of the last
	 * argument; a NUL ends the line for sshd. */
	WALK("Port 22\r\nPort 23 \f\r\n", 0, "1 Port 22", "2 Port 23");
	WALK("Port 22\0 23\nPort 24\n", 0, "1 Port 22", "2 Port 24");
	/* A keyword sshd would not hold is no directive. */
	WALK("Xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx 1\nPort 2\n", 0, "2 Port 2");
	/* An unmatched quote in the arguments is an error sshd makes too. */
	WALK("Port 22\nBanner \"abc\nPort 23\n", -EBADMSG, "1 Port 22");
	/* The last line needs no terminator. */
	WALK("Port 22", 0, "1 Port 22");
}

static void test_next_match(void **state)
{
	(void)state;
	/* Match lines are directives like any other: the walker (planmatch.c,
	 * sshdmatch.c) decides what they cover. Indentation means nothing. */
	WALK("PasswordAuthentication no\n"
	     "Match User alice,bob Address 10.0.0.0/8\r\n"
	     "\tPasswordAuthentication yes\n"
	     "Match all\n"
	     "  KbdInteractiveAuthentication=no\n",
	     0, "1 PasswordAuthentication no", "2 Match User|alice,bob|Address|10.0.0.0/8",
	     "3 PasswordAuthentication yes", "4 Match all", "5 KbdInteractiveAuthentication no");
	/* The managed block is read like the admin's lines. */
	WALK(SSHDCONF_BEGIN "\nPort 2222\n" SSHDCONF_END "\n", 0, "2 Port 2222");
	/* Invalid UTF-8 passes through as bytes. */
	WALK("Banner \xff\xfe\n", 0, "1 Banner \xff\xfe");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_penalty_exempt_line),
		cmocka_unit_test(test_next_tokens),
		cmocka_unit_test(test_next_match),
		cmocka_unit_test(test_debian_stock),
		cmocka_unit_test(test_insert_empty),
		cmocka_unit_test(test_insert_comment_only),
		cmocka_unit_test(test_insert_after_leading_comments),
		cmocka_unit_test(test_insert_before_include),
		cmocka_unit_test(test_insert_before_match),
		cmocka_unit_test(test_replace_in_place),
		cmocka_unit_test(test_remove_gives_original),
		cmocka_unit_test(test_first_value_wins),
		cmocka_unit_test(test_ports_disabled),
		cmocka_unit_test(test_port_spellings),
		cmocka_unit_test(test_port_in_match_left),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_missing_final_newline),
		cmocka_unit_test(test_bytes_kept),
		cmocka_unit_test(test_block_read_values),
		cmocka_unit_test(test_damaged_blocks),
		cmocka_unit_test(test_invalid_struct),
		cmocka_unit_test(test_includes),
		cmocka_unit_test(test_includes_invalid),
		cmocka_unit_test(test_real_sshd),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
