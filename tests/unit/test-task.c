/* task: every field of the task schema and every refusal, the secret kept
 * out of messages and wiped from cJSON's copies, and the result JSON both
 * ways. The keys are real (ssh-keygen), so pubkey_parse is exercised too. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "authkeys.h"
#include "task.h"

/* Made with ssh-keygen -t ed25519 / rsa -b 2048 / ecdsa. */
#define ED1_B64 "AAAAC3NzaC1lZDI1NTE5AAAAIJdEFSn9M71M1dWmz+l7DwuaudMhwycz4UEiUQP00aDj"
#define ED1 "ssh-ed25519 " ED1_B64 " test-ed25519"
#define ED2_B64 "AAAAC3NzaC1lZDI1NTE5AAAAICzT+zKEMS0m/YxeJrrGRi3Uff6YLCa8MyZarH8voxqA"
#define ED2 "ssh-ed25519 " ED2_B64 " second"
#define RSA                                                                                        \
	"ssh-rsa "                                                                                 \
	"AAAAB3NzaC1yc2EAAAADAQABAAABAQCamu0sz9qPrHz9wg8GW3m9GQGXZYQDHdtCjQpETSRWv3Pv7gnkxjFlB4BtxT8RW9" \
	"nO+/f/L9s6yP0FSRlETKv+qh/E7fP6jNcrh4o5aUYkQeRLQklf/k4Jgn7o/EHKwdpaPLXjt+zbOHYRv/C+mJGJV5unV9X+" \
	"CLq/8nmX1/TfiJeXP9smjTlEKuhAtLXNScbOSJj0bRfteVP1X1lalmdt/PAa4ciHKWu2ZDtVcIzjBK/LHlDDBjD9plmquv" \
	"ov8TzK33Yhs4UAxCrr0QEHj6DswZdw5QCf4fm5WckS3mzFrtTnmdXLQRdUfc7sAuABoun5PBKUcUAvbmaLJl4LSX4l "   \
	"test-rsa"
#define ECDSA                                                                                      \
	"ecdsa-sha2-nistp256 "                                                                     \
	"AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBl5LYL/wRqp9CDO7T1WDqsDyb6/IJ9V6kt6LeRW7D" \
	"WKbs+15zdAGSjJXce4dXpdbtrhV/ng937plLEouh9J0PY= test-ecdsa"

/* Must never appear in a message; tasks that carry it use it as auth.key. */
#define SECRET "S3cr3t-P4ss"

/* Task text is written with ' for " (json() swaps them back): JSON full
 * of \" is unreadable. */
#define HEAD_A "'task_id':'t-1','action':'associate'"
#define HEAD_D "'task_id':'t-1','action':'disassociate'"
#define KP1 "'keypair_name':'kp1','public_key':'" ED1 "'"
#define SRV "'server':{'id':'srv-1'}"
#define SRV_WITH(x) "'server':{'id':'srv-1'," x "}"
#define AUTH_PW "'auth':{'type':'password','key':'" SECRET "'}"
#define ASSOC "{" HEAD_A "," KP1 "," SRV "}"
#define ASSOC_WITH(x) "{" HEAD_A "," KP1 "," SRV "," x "}"
#define ASSOC_SRV(x) "{" HEAD_A "," KP1 "," SRV_WITH(x) "}"
#define DIS_WITH(x) "{" HEAD_D "," SRV "," x "}"

struct refusal {
	const char *json;
	enum error_code code;
	const char *needle;	/* must be in the message */
};

static char *json(const char *s)
{
	char *j = strdup(s);
	assert_non_null(j);
	for (char *p = j; *p; p++)
		if (*p == '\'')
			*p = '"';
	return j;
}

static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

static int parse_raw(const char *text, size_t len, struct task *t, struct result *res)
{
	result_init(res);
	return task_parse(text, len, t, res);
}

static void accepted(const char *q, struct task *t, struct result *res)
{
	char *j = json(q);
	int r = parse_raw(j, strlen(j), t, res);
	if (r != 0)
		print_error("refused (%s): %s\n", res->msg, j);
	free(j);
	assert_int_equal(r, 0);
	assert_int_equal(res->code, ERR_NONE);
}

static void accepted_free(const char *q)
{
	struct task t;
	struct result res;
	accepted(q, &t, &res);
	task_free(&t);
	result_free(&res);
}

static void assert_one_line(const char *msg)
{
	for (const char *p = msg; *p; p++)
		assert_false((unsigned char)*p < 0x20 || *p == 0x7f);
}

static void refused_raw(const char *text, size_t len, enum error_code code, const char *needle)
{
	struct task t;
	struct result res;
	int r = parse_raw(text, len, &t, &res);
	if (r != -1 || res.code != code || !strstr(res.msg, needle))
		print_error("task: %.*s\ngot r=%d code=%d msg \"%s\"; want code=%d and \"%s\"\n",
			    (int)(len > 300 ? 300 : len), text, r, res.code, res.msg, code, needle);
	assert_int_equal(r, -1);
	assert_int_equal(res.code, code);
	assert_non_null(strstr(res.msg, needle));
	assert_one_line(res.msg);
	assert_null(strstr(res.msg, SECRET));
	/* A refused task holds nothing. */
	assert_null(t.keys);
	assert_int_equal(t.n_keys, 0);
	assert_null(t.user);
	assert_null(t.server_id);
	assert_null(t.auth_key.data);
	result_free(&res);
}

static void refused(const char *q, enum error_code code, const char *needle)
{
	char *j = json(q);
	refused_raw(j, strlen(j), code, needle);
	free(j);
}

static void refused_all(const struct refusal *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		refused(v[i].json, v[i].code, v[i].needle);
}

static void test_error_code_names(void **state)
{
	static const struct {
		enum error_code code;
		const char *name;
	} names[] = {
		{ ERR_INVALID_TASK, "KPS.AGENT.INVALID_TASK" },
		{ ERR_UNSUPPORTED, "KPS.AGENT.UNSUPPORTED" },
		{ ERR_EXPIRED, "KPS.AGENT.EXPIRED" },
		{ ERR_WRONG_SERVER, "KPS.AGENT.WRONG_SERVER" },
		{ ERR_USER_NOT_FOUND, "KPS.AGENT.USER_NOT_FOUND" },
		{ ERR_AUTH_FAILED, "KPS.AGENT.AUTH_FAILED" },
		{ ERR_SSHD_UNREACHABLE, "KPS.AGENT.SSHD_UNREACHABLE" },
		{ ERR_UNSAFE_PATH, "KPS.AGENT.UNSAFE_PATH" },
		{ ERR_SSHD_CONFIG_INVALID, "KPS.AGENT.SSHD_CONFIG_INVALID" },
		{ ERR_RELOAD_FAILED, "KPS.AGENT.RELOAD_FAILED" },
		{ ERR_PROBE_FAILED, "KPS.AGENT.PROBE_FAILED" },
		{ ERR_IO_ERROR, "KPS.AGENT.IO_ERROR" },
		{ ERR_TIMEOUT, "KPS.AGENT.TIMEOUT" },
		{ ERR_PORT_IN_USE, "KPS.AGENT.PORT_IN_USE" },
		{ ERR_BAD_SIGNATURE, "KPS.AGENT.BAD_SIGNATURE" },
		{ ERR_POLICY_DENIED, "KPS.AGENT.POLICY_DENIED" },
	};
	(void)state;
	assert_int_equal(ELEMENTSOF(names), ERR_COUNT - 1);
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		assert_string_equal(error_code_name(names[i].code), names[i].name);
		assert_int_equal(error_code_from_name(names[i].name), names[i].code);
	}
	assert_null(error_code_name(ERR_NONE));
	assert_null(error_code_name(ERR_COUNT));
	assert_int_equal(error_code_from_name(NULL), ERR_COUNT);
	assert_int_equal(error_code_from_name(""), ERR_COUNT);
	assert_int_equal(error_code_from_name("KPS.AGENT.NOPE"), ERR_COUNT);
	assert_int_equal(error_code_from_name("kps.agent.invalid_task"), ERR_COUNT);
	assert_int_equal(error_code_from_name("INVALID_TASK"), ERR_COUNT);
}

static void test_associate_full(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted("{" HEAD_A "," KP1 ",'user':'ubuntu',"
		 SRV_WITH(AUTH_PW ",'disable_password':true,'port':2222")
		 ",'expires_at':'2026-11-23T10:00:00Z'}", &t, &res);
	assert_string_equal(t.id, "t-1");
	assert_int_equal(t.action, TASK_ASSOCIATE);
	assert_int_equal(t.n_keys, 1);
	assert_string_equal(t.keys[0].name, "kp1");
	assert_string_equal(t.keys[0].public_key, ED1);
	assert_string_equal(t.user, "ubuntu");
	assert_string_equal(t.server_id, "srv-1");
	assert_int_equal(t.auth_type, AUTH_PASSWORD);
	assert_int_equal(t.auth_key.len, strlen(SECRET));
	assert_string_equal(t.auth_key.data, SECRET);
	assert_int_equal(t.disable_password, 1);
	assert_int_equal(t.port, 2222);
	assert_true(t.has_expiry);
	assert_int_equal(t.expires_at, 1795428000);
	assert_string_equal(res.task_id, "t-1");
	assert_string_equal(res.server_id, "srv-1");

	task_free(&t);
	assert_null(t.keys);
	assert_int_equal(t.n_keys, 0);
	assert_null(t.user);
	assert_null(t.server_id);
	assert_null(t.auth_key.data);
	assert_int_equal(t.auth_key.len, 0);
	assert_int_equal(t.disable_password, -1);
	task_free(&t);
	result_free(&res);
}

static void test_associate_defaults(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted(ASSOC, &t, &res);
	assert_int_equal(t.n_keys, 1);
	assert_null(t.user);
	assert_int_equal(t.auth_type, AUTH_NONE);
	assert_null(t.auth_key.data);
	assert_int_equal(t.disable_password, -1);
	assert_int_equal(t.port, 0);
	assert_false(t.has_expiry);
	task_free(&t);
	result_free(&res);
}

/* The key is stored as pubkey_format() writes it, not as the task wrote it. */
static void test_public_key_normalised(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted("{" HEAD_A ",'keypair_name':'kp1','public_key':'  ssh-ed25519   " ED1_B64
		 "   my laptop key  '," SRV "}", &t, &res);
	assert_string_equal(t.keys[0].public_key, "ssh-ed25519 " ED1_B64 " my laptop key");
	task_free(&t);
	result_free(&res);

	accepted("{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519 " ED1_B64 "'," SRV "}",
		 &t, &res);
	assert_string_equal(t.keys[0].public_key, "ssh-ed25519 " ED1_B64);
	task_free(&t);
	result_free(&res);
}

static void test_associate_keypairs(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted("{" HEAD_A ",'keypairs':[{'name':'kp-ed','public_key':'" ED1 "'},"
		 "{'public_key':'" RSA "','name':'kp.rsa'},{'name':'KP_3','public_key':'" ECDSA "'}],"
		 SRV "}", &t, &res);
	assert_int_equal(t.action, TASK_ASSOCIATE);
	assert_int_equal(t.n_keys, 3);
	assert_string_equal(t.keys[0].name, "kp-ed");
	assert_string_equal(t.keys[0].public_key, ED1);
	assert_string_equal(t.keys[1].name, "kp.rsa");
	assert_string_equal(t.keys[1].public_key, RSA);
	assert_string_equal(t.keys[2].name, "KP_3");
	assert_string_equal(t.keys[2].public_key, ECDSA);
	task_free(&t);
	result_free(&res);
}

static void test_disassociate_all(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted("{" HEAD_D "," SRV_WITH(AUTH_PW ",'port':22") "}", &t, &res);
	assert_int_equal(t.action, TASK_DISASSOCIATE);
	assert_null(t.keys);
	assert_int_equal(t.n_keys, 0);
	assert_int_equal(t.auth_type, AUTH_PASSWORD);
	assert_int_equal(t.port, 22);
	assert_int_equal(t.disable_password, -1);
	task_free(&t);
	result_free(&res);
}

static void test_disassociate_named(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted(DIS_WITH("'keypair_name':'kp1'"), &t, &res);
	assert_int_equal(t.n_keys, 1);
	assert_string_equal(t.keys[0].name, "kp1");
	assert_null(t.keys[0].public_key);
	task_free(&t);
	result_free(&res);

	accepted(DIS_WITH(KP1), &t, &res);
	assert_int_equal(t.n_keys, 1);
	assert_string_equal(t.keys[0].public_key, ED1);
	task_free(&t);
	result_free(&res);

	/* One key under two names is no contradiction when removing. */
	accepted(DIS_WITH("'keypairs':[{'name':'a'},{'name':'b','public_key':'" ED2 "'},"
			  "{'name':'c','public_key':'" ED2 "'}]"), &t, &res);
	assert_int_equal(t.n_keys, 3);
	assert_string_equal(t.keys[0].name, "a");
	assert_null(t.keys[0].public_key);
	assert_string_equal(t.keys[1].name, "b");
	assert_string_equal(t.keys[1].public_key, ED2);
	assert_string_equal(t.keys[2].public_key, ED2);
	task_free(&t);
	result_free(&res);
}

static void test_auth_keypair_multiline(void **state)
{
	struct task t;
	struct result res;
	static const char pem[] = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\r\n"
				  "-----END OPENSSH PRIVATE KEY-----\n";
	(void)state;
	accepted(ASSOC_SRV("'auth':{'key':'-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAA"
			   "\\r\\n-----END OPENSSH PRIVATE KEY-----\\n','type':'keypair'}"), &t, &res);
	assert_int_equal(t.auth_type, AUTH_KEYPAIR);
	assert_int_equal(t.auth_key.len, strlen(pem));
	assert_memory_equal(t.auth_key.data, pem, strlen(pem));
	task_free(&t);
	result_free(&res);
}

static void test_auth_alias(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted(ASSOC_SRV("'authentication':{'type':'password','key':'" SECRET "'}"), &t, &res);
	assert_int_equal(t.auth_type, AUTH_PASSWORD);
	assert_string_equal(t.auth_key.data, SECRET);
	task_free(&t);
	result_free(&res);

	refused(ASSOC_SRV(AUTH_PW ",'authentication':{'type':'password','key':'" SECRET "'}"),
		ERR_INVALID_TASK, "server.auth and server.authentication");
	refused(ASSOC_SRV("'authentication':{'type':'password','key':'x','extra':1}"), ERR_INVALID_TASK,
		"server.authentication.extra");
	refused(ASSOC_SRV("'authentication':{'type':'password'}"), ERR_INVALID_TASK,
		"server.authentication.key is missing");
	refused(ASSOC_SRV("'authentication':'" SECRET "'"), ERR_INVALID_TASK,
		"server.authentication must be an object");
}

static void test_auth_key_limits(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *max = repeat('k', AUTH_KEY_MAX);
	char *q = NULL;
	assert_true(asprintf(&q, ASSOC_SRV("'auth':{'type':'password','key':'%s'}"), max) > 0);
	accepted(q, &t, &res);
	assert_int_equal(t.auth_key.len, AUTH_KEY_MAX);
	task_free(&t);
	result_free(&res);
	free(q);
	free(max);

	max = repeat('k', AUTH_KEY_MAX + 1);
	assert_true(asprintf(&q, ASSOC_SRV("'auth':{'type':'keypair','key':'%s'}"), max) > 0);
	refused(q, ERR_INVALID_TASK, "server.auth.key is longer than");
	free(q);
	free(max);

	refused(ASSOC_SRV("'auth':{'type':'password','key':''}"), ERR_INVALID_TASK,
		"server.auth.key is empty");
}

static void test_auth_key_control_chars(void **state)
{
	static const struct refusal bad[] = {
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\t'}"), ERR_INVALID_TASK,
		  "server.auth.key: a password" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\n'}"), ERR_INVALID_TASK,
		  "server.auth.key: a password" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'\\r" SECRET "'}"), ERR_INVALID_TASK,
		  "server.auth.key: a password" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\u007f'}"), ERR_INVALID_TASK,
		  "server.auth.key: a password" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\u0001'}"), ERR_INVALID_TASK,
		  "server.auth.key: a password" },
		{ ASSOC_SRV("'auth':{'type':'keypair','key':'-----BEGIN\\t" SECRET "'}"), ERR_INVALID_TASK,
		  "server.auth.key: a private key" },
		{ ASSOC_SRV("'auth':{'type':'keypair','key':'" SECRET "\\u001b[0m'}"), ERR_INVALID_TASK,
		  "server.auth.key: a private key" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
	/* Not control characters: spaces, quotes, backslashes, UTF-8. */
	accepted_free(ASSOC_SRV("'auth':{'type':'password','key':'p a\\\\s\\'s \xc3\xa9'}"));
}

static void test_auth_type(void **state)
{
	static const struct refusal bad[] = {
		{ ASSOC_SRV("'auth':{'type':'certificate','key':'" SECRET "'}"), ERR_UNSUPPORTED,
		  "server.auth.type \"certificate\" is not supported" },
		{ ASSOC_SRV("'auth':{'type':'Password','key':'" SECRET "'}"), ERR_UNSUPPORTED,
		  "\"Password\"" },
		{ ASSOC_SRV("'auth':{'type':'','key':'" SECRET "'}"), ERR_UNSUPPORTED, "server.auth.type" },
		{ ASSOC_SRV("'auth':{'type':'pass\\nword','key':'" SECRET "'}"), ERR_INVALID_TASK,
		  "server.auth.type contains a control character" },
		{ ASSOC_SRV("'auth':{'type':1,'key':'" SECRET "'}"), ERR_INVALID_TASK,
		  "server.auth.type must be a string, not a number" },
		{ ASSOC_SRV("'auth':{'key':'" SECRET "'}"), ERR_INVALID_TASK,
		  "server.auth.type is missing" },
		{ ASSOC_SRV("'auth':{'type':'password'}"), ERR_INVALID_TASK, "server.auth.key is missing" },
		{ ASSOC_SRV("'auth':{'type':'password','key':['" SECRET "']}"), ERR_INVALID_TASK,
		  "server.auth.key must be a string, not an array" },
		{ ASSOC_SRV("'auth':{}"), ERR_INVALID_TASK, "server.auth.type is missing" },
		{ ASSOC_SRV("'auth':null"), ERR_INVALID_TASK, "server.auth must be an object, not null" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_port(void **state)
{
	static const struct {
		const char *text;
		int port;
	} good[] = { { "1", 1 }, { "22", 22 }, { "22.0", 22 }, { "2.2e1", 22 }, { "65535", 65535 },
		     { "6.5535e4", 65535 } };
	static const char *const bad[] = { "0",     "65536", "-1",    "22.5", "'22'", "1e400",
					   "-1e400", "true",  "false", "null", "[22]", "{}",
					   "1e5",   "0.5",   "65535.5", "-0" };
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		struct task t;
		struct result res;
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_SRV("'port':%s"), good[i].text) > 0);
		accepted(q, &t, &res);
		assert_int_equal(t.port, good[i].port);
		task_free(&t);
		result_free(&res);
		free(q);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_SRV("'port':%s"), bad[i]) > 0);
		refused(q, ERR_INVALID_TASK, "server.port must be");
		free(q);
	}
}

static void test_disable_password(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted(ASSOC_SRV("'disable_password':false"), &t, &res);
	assert_int_equal(t.disable_password, 0);
	task_free(&t);
	result_free(&res);

	refused("{" HEAD_D "," SRV_WITH("'disable_password':true") "}", ERR_INVALID_TASK,
		"server.disable_password applies to associate only");
	refused("{" HEAD_D "," SRV_WITH("'disable_password':false") "}", ERR_INVALID_TASK,
		"server.disable_password applies to associate only");
	refused(ASSOC_SRV("'disable_password':'true'"), ERR_INVALID_TASK,
		"server.disable_password must be a boolean, not a string");
	refused(ASSOC_SRV("'disable_password':1"), ERR_INVALID_TASK,
		"server.disable_password must be a boolean, not a number");
}

static void test_user(void **state)
{
	static const char *const good[] = { "root", "ubuntu", "a.b_c-d", "svc$", "_apt", "u1",
					    "abcdefghijklmnopqrstuvwxyz012345" };
	static const char *const bad[] = { "", "-x", "$", "a b", "a/b", "a$b", ".", "..",
					   "abcdefghijklmnopqrstuvwxyz0123456", "root\\n", "r\xc3\xa9",
					   "root:x" };
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		struct task t;
		struct result res;
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_WITH("'user':'%s'"), good[i]) > 0);
		accepted(q, &t, &res);
		assert_string_equal(t.user, good[i]);
		task_free(&t);
		result_free(&res);
		free(q);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_WITH("'user':'%s'"), bad[i]) > 0);
		refused(q, ERR_INVALID_TASK, "user must be a user name");
		free(q);
	}
	refused(ASSOC_WITH("'user':0"), ERR_INVALID_TASK, "user must be a string, not a number");
	refused(ASSOC_WITH("'user':null"), ERR_INVALID_TASK, "user must be a string, not null");
}

static void test_task_id(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *id = repeat('a', TASK_ID_MAX);
	char *q = NULL;
	assert_true(asprintf(&q, "{'task_id':'%s','action':'associate'," KP1 "," SRV "}", id) > 0);
	accepted(q, &t, &res);
	assert_string_equal(t.id, id);
	assert_string_equal(res.task_id, id);
	task_free(&t);
	result_free(&res);
	free(q);
	free(id);

	id = repeat('a', TASK_ID_MAX + 1);
	assert_true(asprintf(&q, "{'task_id':'%s','action':'associate'," KP1 "," SRV "}", id) > 0);
	refused(q, ERR_INVALID_TASK, "task_id must be 1-64 characters");
	free(q);
	free(id);

	static const struct refusal bad[] = {
		{ "{'task_id':'','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':'a/b','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':'a b','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':'caf\xc3\xa9','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':'t\\n1','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':'../x','action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be 1-64" },
		{ "{'task_id':7,'action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "task_id must be a string, not a number" },
		{ "{'action':'associate'," KP1 "," SRV "}", ERR_INVALID_TASK, "task_id is missing" },
	};
	refused_all(bad, ELEMENTSOF(bad));
}

/* A refusal is reported against the task and server it names, when the
 * text names them validly and once. */
static void test_ids_reported_on_refusal(void **state)
{
	static const struct {
		const char *json;
		const char *task_id;
		const char *server_id;
	} cases[] = {
		{ ASSOC_SRV("'port':0"), "t-1", "srv-1" },
		{ "{" HEAD_A ",'action':'x'," KP1 "," SRV "}", "t-1", "srv-1" },
		{ "{" HEAD_A "," KP1 ",'server':{'id':'srv-1','id':'srv-2'}}", "t-1", NULL },
		{ "{'task_id':'t-1','task_id':'t-2','action':'associate'," KP1 "," SRV "}", "", "srv-1" },
		{ "{'task_id':'a/b','action':'associate'," KP1 "," SRV "}", "", "srv-1" },
		{ "{'task_id':'t-1','action':'nope','server':{'id':'bad id'}}", "t-1", NULL },
		{ "{'task_id':'t-1','action':'associate'", "", NULL },
		{ "{'task_id':'t-1'} x", "", NULL },
	};
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		struct task t;
		struct result res;
		char *j = json(cases[i].json);
		assert_int_equal(parse_raw(j, strlen(j), &t, &res), -1);
		assert_string_equal(res.task_id, cases[i].task_id);
		if (cases[i].server_id)
			assert_string_equal(res.server_id, cases[i].server_id);
		else
			assert_null(res.server_id);
		result_free(&res);
		free(j);
	}
}

static void test_missing_fields(void **state)
{
	static const struct refusal bad[] = {
		{ "{'task_id':'t-1'," KP1 "," SRV "}", ERR_INVALID_TASK, "action is missing" },
		{ "{" HEAD_A "," KP1 "}", ERR_INVALID_TASK, "server is missing" },
		{ "{" HEAD_A "," KP1 ",'server':{}}", ERR_INVALID_TASK, "server.id is missing" },
		{ "{" HEAD_A "," SRV "}", ERR_INVALID_TASK,
		  "associate needs keypair_name and public_key, or keypairs" },
		{ "{" HEAD_A ",'keypair_name':'kp1'," SRV "}", ERR_INVALID_TASK,
		  "public_key is missing" },
		{ "{" HEAD_A ",'public_key':'" ED1 "'," SRV "}", ERR_INVALID_TASK,
		  "public_key is given without keypair_name" },
		{ DIS_WITH("'public_key':'" ED1 "'"), ERR_INVALID_TASK,
		  "public_key is given without keypair_name" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a'}]," SRV "}", ERR_INVALID_TASK,
		  "keypairs[0].public_key is missing" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'},{'name':'b'}]," SRV "}",
		  ERR_INVALID_TASK, "keypairs[1].public_key is missing" },
		{ "{" HEAD_A ",'keypairs':[{'public_key':'" ED1 "'}]," SRV "}", ERR_INVALID_TASK,
		  "keypairs[0].name is missing" },
		{ DIS_WITH("'keypairs':[{}]"), ERR_INVALID_TASK, "keypairs[0].name is missing" },
		{ ASSOC_SRV("'auth':{'type':'password'}"), ERR_INVALID_TASK,
		  "server.auth.key is missing" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_wrong_types(void **state)
{
	static const struct refusal bad[] = {
		{ "{'task_id':'t-1','action':1," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "action must be a string, not a number" },
		{ "{'task_id':'t-1','action':['associate']," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "action must be a string, not an array" },
		{ "{" HEAD_A ",'keypair_name':5,'public_key':'" ED1 "'," SRV "}", ERR_INVALID_TASK,
		  "keypair_name must be a string, not a number" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':['" ED1 "']," SRV "}", ERR_INVALID_TASK,
		  "public_key must be a string, not an array" },
		{ "{" HEAD_A ",'keypairs':{'name':'a'}," SRV "}", ERR_INVALID_TASK,
		  "keypairs must be an array, not an object" },
		{ "{" HEAD_A ",'keypairs':['" ED1 "']," SRV "}", ERR_INVALID_TASK,
		  "keypairs[0] must be an object, not a string" },
		{ "{" HEAD_A ",'keypairs':[{'name':1,'public_key':'" ED1 "'}]," SRV "}", ERR_INVALID_TASK,
		  "keypairs[0].name must be a string, not a number" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':true}]," SRV "}", ERR_INVALID_TASK,
		  "keypairs[0].public_key must be a string, not a boolean" },
		{ "{" HEAD_A "," KP1 ",'server':'srv-1'}", ERR_INVALID_TASK,
		  "server must be an object, not a string" },
		{ "{" HEAD_A "," KP1 ",'server':[]}", ERR_INVALID_TASK,
		  "server must be an object, not an array" },
		{ "{" HEAD_A "," KP1 ",'server':{'id':42}}", ERR_INVALID_TASK,
		  "server.id must be a string, not a number" },
		{ ASSOC_SRV("'auth':'" SECRET "'"), ERR_INVALID_TASK,
		  "server.auth must be an object, not a string" },
		{ ASSOC_WITH("'expires_at':1795428000"), ERR_INVALID_TASK,
		  "expires_at must be a string, not a number" },
		{ DIS_WITH("'keypair_name':null"), ERR_INVALID_TASK,
		  "keypair_name must be a string, not null" },
		{ DIS_WITH("'keypairs':null"), ERR_INVALID_TASK, "keypairs must be an array, not null" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_unknown_fields(void **state)
{
	static const struct refusal bad[] = {
		{ ASSOC_WITH("'foo':1"), ERR_INVALID_TASK, "unknown field \"foo\"" },
		{ ASSOC_WITH("'Task_id':'t-1'"), ERR_INVALID_TASK, "unknown field \"Task_id\"" },
		{ ASSOC_WITH("'':1"), ERR_INVALID_TASK, "unknown field \"\"" },
		{ ASSOC_SRV("'foo':{}"), ERR_INVALID_TASK, "unknown field \"server.foo\"" },
		{ ASSOC_SRV("'ID':'x'"), ERR_INVALID_TASK, "unknown field \"server.ID\"" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "','user':'root'}"),
		  ERR_INVALID_TASK, "unknown field \"server.auth.user\"" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "','comment':'x'}]," SRV "}",
		  ERR_INVALID_TASK, "unknown field \"keypairs[0].comment\"" },
		{ DIS_WITH("'keypairs':[{'name':'a'},{'name':'b','fingerprint':'x'}]"), ERR_INVALID_TASK,
		  "unknown field \"keypairs[1].fingerprint\"" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_unknown_field_echo(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *name = repeat('n', 200);
	char *q = NULL;
	assert_true(asprintf(&q, ASSOC_WITH("'%s':1"), name) > 0);
	char *j = json(q);
	assert_int_equal(parse_raw(j, strlen(j), &t, &res), -1);
	assert_non_null(strstr(res.msg, "\"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn...\""));
	assert_null(strstr(res.msg, "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"));
	result_free(&res);
	free(j);
	free(q);
	free(name);

	/* Control characters and non-ASCII in a quoted name become '?'. */
	refused(ASSOC_WITH("'a\\nb\\u001bc\xc3\xa9':1"), ERR_INVALID_TASK, "\"a?b?c??\"");
}

static void test_duplicate_keys(void **state)
{
	static const struct refusal bad[] = {
		{ "{" HEAD_A ",'task_id':'t-1'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "field \"task_id\" appears twice" },
		{ "{" HEAD_A ",'action':'disassociate'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "field \"action\" appears twice" },
		{ ASSOC_WITH("'user':'root','user':'evil'"), ERR_INVALID_TASK,
		  "field \"user\" appears twice" },
		{ "{" HEAD_A "," KP1 "," SRV "," SRV "}", ERR_INVALID_TASK,
		  "field \"server\" appears twice" },
		{ ASSOC_SRV("'port':22,'port':2222"), ERR_INVALID_TASK, "field \"port\" appears twice" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "','key':'" SECRET "'}"),
		  ERR_INVALID_TASK, "field \"key\" appears twice" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "','name':'b'}]," SRV "}",
		  ERR_INVALID_TASK, "field \"name\" appears twice" },
		/* Also inside what is refused later anyway. */
		{ ASSOC_WITH("'x':{'y':[{'z':1,'z':2}]}"), ERR_INVALID_TASK, "field \"z\" appears twice" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_nul_escape(void **state)
{
	struct task t;
	struct result res;
	static const struct refusal bad[] = {
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\u0000tail'}"), ERR_INVALID_TASK,
		  "\\u0000" },
		{ "{" HEAD_A ",'keypair_name':'kp1\\u0000x','public_key':'" ED1 "'," SRV "}",
		  ERR_INVALID_TASK, "\\u0000" },
		{ ASSOC_WITH("'us\\u0000er':'root'"), ERR_INVALID_TASK, "\\u0000" },
		/* An escaped backslash, then a real escape. */
		{ ASSOC_SRV("'auth':{'type':'password','key':'a\\\\\\u0000'}"), ERR_INVALID_TASK,
		  "\\u0000" },
		{ ASSOC_WITH("'expires_at':'\\u0000'"), ERR_INVALID_TASK, "\\u0000" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));

	/* An escaped backslash followed by the text u0000 is no escape. */
	accepted(ASSOC_SRV("'auth':{'type':'password','key':'a\\\\u0000'}"), &t, &res);
	assert_string_equal(t.auth_key.data, "a\\u0000");
	assert_int_equal(t.auth_key.len, 7);
	task_free(&t);
	result_free(&res);
	accepted(ASSOC_SRV("'auth':{'type':'password','key':'\\\\\\\\u0000\\u00e9'}"), &t, &res);
	assert_string_equal(t.auth_key.data, "\\\\u0000\xc3\xa9");
	task_free(&t);
	result_free(&res);
}

static void test_raw_nul(void **state)
{
	static const char inside[] = "{\"task_id\":\"t-1\",\"action\":\"assoc\0iate\"}";
	static const char after[] = "{\"task_id\":\"t-1\",\"action\":\"associate\"}";
	(void)state;
	refused_raw(inside, sizeof(inside) - 1, ERR_INVALID_TASK, "NUL byte");
	/* sizeof counts the terminating NUL: a length that takes it in. */
	refused_raw(after, sizeof(after), ERR_INVALID_TASK, "NUL byte");
	refused_raw("\0", 1, ERR_INVALID_TASK, "NUL byte");
}

/* The text is (pointer, length): bytes past the length are not read. */
static void test_length_bounds_text(void **state)
{
	struct task t;
	struct result res;
	char *j = json(ASSOC "garbage");
	size_t len = strlen(j) - strlen("garbage");
	(void)state;
	assert_int_equal(parse_raw(j, len, &t, &res), 0);
	assert_string_equal(t.id, "t-1");
	task_free(&t);
	result_free(&res);
	refused_raw(j, len - 1, ERR_INVALID_TASK, "task is not valid JSON");
	free(j);
	refused_raw(NULL, 0, ERR_INVALID_TASK, "task is empty");
	refused_raw("", 0, ERR_INVALID_TASK, "task is empty");
}

static void test_size_limit(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *j = json(ASSOC);
	size_t n = strlen(j);
	char *big = malloc(TASK_MAX_BYTES + 2);
	assert_non_null(big);
	memcpy(big, j, n);
	memset(big + n, ' ', TASK_MAX_BYTES + 1 - n);
	assert_int_equal(parse_raw(big, TASK_MAX_BYTES, &t, &res), 0);
	task_free(&t);
	result_free(&res);
	refused_raw(big, TASK_MAX_BYTES + 1, ERR_INVALID_TASK, "task is 65537 bytes, more than 65536");
	free(big);
	free(j);

	/* Over the limit is refused before the text is looked at. */
	big = repeat('[', 1 << 20);
	refused_raw(big, 1 << 20, ERR_INVALID_TASK, "more than 65536");
	free(big);
}

static void test_deep_nesting(void **state)
{
	(void)state;
	char *deep = repeat('[', 10000);
	refused_raw(deep, 10000, ERR_INVALID_TASK, "nests deeper than 8");
	memset(deep, '{', 10000);
	refused_raw(deep, 10000, ERR_INVALID_TASK, "nests deeper than 8");
	free(deep);
	/* Nine levels: refused as nesting; eight: gets to the schema. */
	refused(ASSOC_WITH("'x':[[[[[[[[]]]]]]]]"), ERR_INVALID_TASK, "nests deeper than 8");
	refused(ASSOC_WITH("'x':[[[[[[[]]]]]]]"), ERR_INVALID_TASK, "unknown field \"x\"");
	refused(ASSOC_WITH("'x':[[[[],[],[[]]]]]"), ERR_INVALID_TASK, "unknown field \"x\"");
	/* Brackets in strings are text, escaped quotes included. */
	accepted_free(ASSOC_SRV("'auth':{'type':'password','key':'[[[[[[[[[[{{{{{{{{{{'}"));
	accepted_free(ASSOC_SRV("'auth':{'type':'password','key':'\\'[[[[[[[[[[\\''}"));
}

static void test_trailing_data(void **state)
{
	static const struct refusal bad[] = {
		{ ASSOC "x", ERR_INVALID_TASK, "data after the JSON value" },
		{ ASSOC "{}", ERR_INVALID_TASK, "data after the JSON value" },
		{ ASSOC "}", ERR_INVALID_TASK, "data after the JSON value" },
		{ ASSOC " \n ,", ERR_INVALID_TASK, "data after the JSON value" },
		{ ASSOC ASSOC, ERR_INVALID_TASK, "data after the JSON value" },
		{ ASSOC "\f", ERR_INVALID_TASK, "data after the JSON value" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
	accepted_free(" \r\n\t" ASSOC " \r\n\t");
}

static void test_not_json(void **state)
{
	static const struct refusal bad[] = {
		{ "{", ERR_INVALID_TASK, "not valid JSON" },
		{ "{'task_id':}", ERR_INVALID_TASK, "not valid JSON" },
		{ "{'task_id':'t-1',}", ERR_INVALID_TASK, "not valid JSON" },
		{ "{task_id:'t-1'}", ERR_INVALID_TASK, "not valid JSON" },
		{ "nope", ERR_INVALID_TASK, "not valid JSON" },
		{ " ", ERR_INVALID_TASK, "not valid JSON" },
		{ "{'a':'\\x'}", ERR_INVALID_TASK, "not valid JSON" },
		{ "{'a':'\\ud800'}", ERR_INVALID_TASK, "not valid JSON" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
	refused_raw("{\"task_id\":'t-1'}", 17, ERR_INVALID_TASK, "not valid JSON (near byte 11)");
}

static void test_not_object(void **state)
{
	static const struct refusal bad[] = {
		{ "[]", ERR_INVALID_TASK, "task is an array, not a JSON object" },
		{ "[" ASSOC "]", ERR_INVALID_TASK, "task is an array, not a JSON object" },
		{ "'x'", ERR_INVALID_TASK, "task is a string, not a JSON object" },
		{ "1", ERR_INVALID_TASK, "task is a number, not a JSON object" },
		{ "true", ERR_INVALID_TASK, "task is a boolean, not a JSON object" },
		{ "null", ERR_INVALID_TASK, "task is null, not a JSON object" },
		{ "{}", ERR_INVALID_TASK, "task_id is missing" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_action(void **state)
{
	static const struct refusal bad[] = {
		{ "{'task_id':'t-1','action':'reset'," SRV "}", ERR_UNSUPPORTED,
		  "action \"reset\" is not supported" },
		{ "{'task_id':'t-1','action':'Associate'," KP1 "," SRV "}", ERR_UNSUPPORTED,
		  "\"Associate\"" },
		{ "{'task_id':'t-1','action':''," SRV "}", ERR_UNSUPPORTED, "action \"\"" },
		{ "{'task_id':'t-1','action':'associate\\n'," KP1 "," SRV "}", ERR_INVALID_TASK,
		  "action contains a control character" },
		{ "{'task_id':'t-1','action':null," SRV "}", ERR_INVALID_TASK,
		  "action must be a string, not null" },
		{ "{'task_id':'t-1','action':'caf\xc3\xa9'," SRV "}", ERR_UNSUPPORTED,
		  "action \"caf??\"" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));

	/* A long action is quoted cut short. */
	char *action = repeat('z', 200);
	char *q = NULL;
	assert_true(asprintf(&q, "{'task_id':'t-1','action':'%s'," SRV "}", action) > 0);
	refused(q, ERR_UNSUPPORTED, "...\" is not supported");
	char *j = json(q);
	struct task t;
	struct result res;
	assert_int_equal(parse_raw(j, strlen(j), &t, &res), -1);
	assert_true(strlen(res.msg) < 80);
	result_free(&res);
	free(j);
	free(q);
	free(action);
}

/* The first error in a fixed order, whatever the order of the text. */
static void test_precedence(void **state)
{
	static const struct refusal bad[] = {
		/* The text as a whole comes first. */
		{ "{" HEAD_A ",'task_id':'bad id','action':'nope'}", ERR_INVALID_TASK, "appears twice" },
		{ "{'task_id':'bad id','x':[[[[[[[[[]]]]]]]]]}", ERR_INVALID_TASK, "nests deeper" },
		{ "{'task_id':'t','task_id':'t'} x", ERR_INVALID_TASK, "data after" },
		/* Then task_id, action and the top-level field names. */
		{ "{'action':'nope','task_id':'bad id'}", ERR_INVALID_TASK, "task_id must be" },
		{ "{'server':7,'action':'nope','task_id':'t-1'}", ERR_UNSUPPORTED, "action \"nope\"" },
		{ "{'server':7,'foo':1," HEAD_A "}", ERR_INVALID_TASK, "unknown field \"foo\"" },
		/* Then keys, user, server, expires_at. */
		{ "{'expires_at':'x','server':7,'user':'-x'," HEAD_A "}", ERR_INVALID_TASK,
		  "associate needs" },
		{ "{'expires_at':'x','server':7,'user':'-x'," HEAD_A "," KP1 "}", ERR_INVALID_TASK,
		  "user must be" },
		{ "{'expires_at':'x','server':7," HEAD_A "," KP1 "}", ERR_INVALID_TASK,
		  "server must be an object" },
		{ "{'expires_at':'x','server':{'port':0,'id':'s','auth':{'type':'x','key':'y'}}," HEAD_A
		  "," KP1 "}", ERR_UNSUPPORTED, "server.auth.type" },
		{ "{'expires_at':'x','server':{'port':0,'id':'s'}," HEAD_A "," KP1 "}", ERR_INVALID_TASK,
		  "server.port" },
		{ "{'expires_at':'x'," SRV "," HEAD_A "," KP1 "}", ERR_INVALID_TASK, "expires_at" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_public_key_refused(void **state)
{
	static const struct refusal bad[] = {
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'no-pty " ED1 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'from=\\'10.0.0.1\\' " ED1 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'" ED1 "\\n" ED2 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key must be one line" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'" ED1 "\\n'," SRV "}", ERR_INVALID_TASK,
		  "public_key must be one line" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519\\t" ED1_B64 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key must be one line" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519 AAAA!!!!'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519 " ED1_B64 "x'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-rsa " ED1_B64 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-foo " ED1_B64 "'," SRV "}",
		  ERR_INVALID_TASK, "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519'," SRV "}", ERR_INVALID_TASK,
		  "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':''," SRV "}", ERR_INVALID_TASK,
		  "public_key is not a public key" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'" SECRET "'," SRV "}", ERR_INVALID_TASK,
		  "public_key is not a public key" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'},{'name':'b','public_key':"
		  "'ssh-rsa AAAA'}]," SRV "}", ERR_INVALID_TASK, "keypairs[1].public_key is not a public key" },
		{ DIS_WITH("'keypair_name':'kp1','public_key':'no-pty " ED1 "'"), ERR_INVALID_TASK,
		  "public_key is not a public key" },
		{ DIS_WITH("'keypairs':[{'name':'a','public_key':'x'}]"), ERR_INVALID_TASK,
		  "keypairs[0].public_key is not a public key" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));

	char *pad = repeat('c', PUBLIC_KEY_MAX);
	char *q = NULL;
	assert_true(asprintf(&q, "{" HEAD_A ",'keypair_name':'kp1','public_key':'" ED1 "%s'," SRV "}",
			     pad) > 0);
	refused(q, ERR_INVALID_TASK, "public_key is longer than 16384 bytes");
	free(q);
	free(pad);
}

static void test_keypair_name(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *name = repeat('k', KEYPAIR_NAME_MAX);
	char *q = NULL;
	assert_true(asprintf(&q, "{" HEAD_A ",'keypair_name':'%s','public_key':'" ED1 "'," SRV "}",
			     name) > 0);
	accepted(q, &t, &res);
	assert_string_equal(t.keys[0].name, name);
	task_free(&t);
	result_free(&res);
	free(q);
	free(name);

	name = repeat('k', KEYPAIR_NAME_MAX + 1);
	assert_true(asprintf(&q, DIS_WITH("'keypairs':[{'name':'%s'}]"), name) > 0);
	refused(q, ERR_INVALID_TASK, "keypairs[0].name must be 1-64 characters");
	free(q);
	free(name);

	static const struct refusal bad[] = {
		{ DIS_WITH("'keypair_name':''"), ERR_INVALID_TASK, "keypair_name must be 1-64" },
		{ DIS_WITH("'keypair_name':'kp 1'"), ERR_INVALID_TASK, "keypair_name must be 1-64" },
		{ DIS_WITH("'keypair_name':'kp\\n1'"), ERR_INVALID_TASK, "keypair_name must be 1-64" },
		{ DIS_WITH("'keypair_name':'kp/1'"), ERR_INVALID_TASK, "keypair_name must be 1-64" },
		{ DIS_WITH("'keypairs':[{'name':'# kps-agent:'}]"), ERR_INVALID_TASK,
		  "keypairs[0].name must be 1-64" },
	};
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_keypairs_refused(void **state)
{
	static const struct refusal bad[] = {
		{ "{" HEAD_A ",'keypairs':[]," SRV "}", ERR_INVALID_TASK, "keypairs is empty" },
		{ DIS_WITH("'keypairs':[]"), ERR_INVALID_TASK, "keypairs is empty" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'},{'name':'a','public_key':'"
		  ED2 "'}]," SRV "}", ERR_INVALID_TASK, "keypairs[1].name \"a\" is given twice" },
		{ DIS_WITH("'keypairs':[{'name':'a'},{'name':'b'},{'name':'a'}]"), ERR_INVALID_TASK,
		  "keypairs[2].name \"a\" is given twice" },
		/* The same key with another comment is the same key. */
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'},{'name':'b','public_key':'"
		  ED2 "'},{'name':'c','public_key':'ssh-ed25519 " ED1_B64 " other'}]," SRV "}",
		  ERR_INVALID_TASK, "keypairs[2].public_key is the key of keypairs[0]" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'}]," KP1 "," SRV "}",
		  ERR_INVALID_TASK, "keypairs cannot be given with keypair_name or public_key" },
		{ "{" HEAD_A ",'keypairs':[{'name':'a','public_key':'" ED1 "'}],'public_key':'" ED2 "',"
		  SRV "}", ERR_INVALID_TASK, "keypairs cannot be given with" },
		{ DIS_WITH("'keypairs':[{'name':'a'}],'keypair_name':'b'"), ERR_INVALID_TASK,
		  "keypairs cannot be given with" },
		{ DIS_WITH("'keypairs':[null]"), ERR_INVALID_TASK, "keypairs[0] must be an object, not null" },
		{ DIS_WITH("'keypairs':[[]]"), ERR_INVALID_TASK, "keypairs[0] must be an object, not an array" },
		{ DIS_WITH("'keypairs':'a'"), ERR_INVALID_TASK, "keypairs must be an array, not a string" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

static char *keypairs_task(size_t n)
{
	struct buf b = { 0 };
	assert_int_equal(buf_puts(&b, "{" HEAD_D "," SRV ",'keypairs':["), 0);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(buf_printf(&b, "%s{'name':'kp%zu'}", i ? "," : "", i), 0);
	assert_int_equal(buf_puts(&b, "]}"), 0);
	return buf_steal(&b, NULL);
}

static void test_keypairs_count(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *q = keypairs_task(TASK_MAX_KEYS);
	accepted(q, &t, &res);
	assert_int_equal(t.n_keys, TASK_MAX_KEYS);
	assert_string_equal(t.keys[TASK_MAX_KEYS - 1].name, "kp99");
	task_free(&t);
	result_free(&res);
	free(q);

	q = keypairs_task(TASK_MAX_KEYS + 1);
	refused(q, ERR_INVALID_TASK, "keypairs has more than 100 entries");
	free(q);
}

static void test_server(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	char *id = repeat('s', SERVER_ID_MAX);
	char *q = NULL;
	assert_true(asprintf(&q, "{" HEAD_A "," KP1 ",'server':{'id':'%s'}}", id) > 0);
	accepted(q, &t, &res);
	assert_string_equal(t.server_id, id);
	assert_string_equal(res.server_id, id);
	task_free(&t);
	result_free(&res);
	free(q);
	free(id);

	id = repeat('s', SERVER_ID_MAX + 1);
	assert_true(asprintf(&q, "{" HEAD_A "," KP1 ",'server':{'id':'%s'}}", id) > 0);
	refused(q, ERR_INVALID_TASK, "server.id must be 1-128 characters");
	free(q);
	free(id);

	static const struct refusal bad[] = {
		{ "{" HEAD_A "," KP1 ",'server':{'id':''}}", ERR_INVALID_TASK, "server.id must be 1-128" },
		{ "{" HEAD_A "," KP1 ",'server':{'id':'s\\t1'}}", ERR_INVALID_TASK,
		  "server.id must be 1-128" },
		{ "{" HEAD_A "," KP1 ",'server':{'id':'a/../b'}}", ERR_INVALID_TASK,
		  "server.id must be 1-128" },
		{ "{" HEAD_A "," KP1 ",'server':{'port':22}}", ERR_INVALID_TASK, "server.id is missing" },
		{ "{" HEAD_A "," KP1 ",'server':null}", ERR_INVALID_TASK, "server must be an object" },
	};
	refused_all(bad, ELEMENTSOF(bad));
}

static void test_expires_at(void **state)
{
	static const struct {
		const char *text;
		int64_t when;
	} good[] = {
		{ "2026-11-23T10:00:00Z", 1795428000 },
		{ "2026-11-23t10:00:00z", 1795428000 },
		{ "2026-11-23T10:00:00.123+08:00", 1795399200 },
		{ "2026-11-23T10:00:00.999999999Z", 1795428000 },
		{ "2026-11-23T10:00:00-05:30", 1795447800 },
		{ "2026-11-23T10:00:00+00:00", 1795428000 },
		{ "2026-11-23T10:00:00-00:00", 1795428000 },
		{ "2024-02-29T00:00:00Z", 1709164800 },
		{ "1969-12-31T23:59:59Z", -1 },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "2000-02-29T23:59:59Z", 951868799 },
	};
	static const char *const bad[] = {
		"2026-11-23",
		"2026-11-23T10:00:00",
		"2026-11-23T10:00Z",
		"2026-11-23 10:00:00Z",
		"2026-13-01T00:00:00Z",
		"2026-00-01T00:00:00Z",
		"2026-11-00T00:00:00Z",
		"2026-11-31T00:00:00Z",
		"2026-02-29T00:00:00Z",
		"1900-02-29T00:00:00Z",
		"2026-11-23T24:00:00Z",
		"2026-11-23T10:60:00Z",
		"2026-11-23T10:00:61Z",
		"2026-11-23T10:00:00+24:00",
		"2026-11-23T10:00:00+08:60",
		"2026-11-23T10:00:00+0800",
		"2026-11-23T10:00:00+08",
		"2026-11-23T10:00:00.Z",
		"2026-11-23T10:00:00.1234567890Z",
		"2026-11-23T10:00:00Zjunk",
		"2026-11-23T10:00:00Z ",
		" 2026-11-23T10:00:00Z",
		"+2026-11-23T10:00:00Z",
		"26-11-23T10:00:00Z",
		"2026-1a-23T10:00:00Z",
		"2026-11-23T10:00:00UTC",
		"2026/11/23T10:00:00Z",
		"tomorrow",
		"",
		"2026-11-23T10:00:00\\nZ",
	};
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(good); i++) {
		struct task t;
		struct result res;
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_WITH("'expires_at':'%s'"), good[i].text) > 0);
		accepted(q, &t, &res);
		assert_true(t.has_expiry);
		if (t.expires_at != good[i].when)
			print_error("%s: %lld\n", good[i].text, (long long)t.expires_at);
		assert_int_equal(t.expires_at, good[i].when);
		task_free(&t);
		result_free(&res);
		free(q);
	}
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *q = NULL;
		assert_true(asprintf(&q, ASSOC_WITH("'expires_at':'%s'"), bad[i]) > 0);
		refused(q, ERR_INVALID_TASK, "expires_at must be an RFC 3339 time");
		free(q);
	}
}

/* Every refusal of a task carrying the secret, and the secret is in none
 * of the messages (refused() checks each). */
static void test_secret_never_in_message(void **state)
{
	static const struct refusal bad[] = {
		{ ASSOC_SRV("'auth':{'type':'token','key':'" SECRET "'}"), ERR_UNSUPPORTED,
		  "server.auth.type" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "\\u0002'}"), ERR_INVALID_TASK,
		  "server.auth.key" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "','key':'" SECRET "'}"),
		  ERR_INVALID_TASK, "appears twice" },
		{ ASSOC_SRV(AUTH_PW ",'authentication':{'type':'password','key':'" SECRET "'}"),
		  ERR_INVALID_TASK, "both given" },
		{ ASSOC_SRV(AUTH_PW ",'port':'" SECRET "'"), ERR_INVALID_TASK, "server.port" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "'},'port':0"), ERR_INVALID_TASK,
		  "server.port" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "'}") "x", ERR_INVALID_TASK,
		  "data after" },
		{ ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "'},'foo':1"), ERR_INVALID_TASK,
		  "server.foo" },
		{ "{" HEAD_A ",'keypair_name':'kp1','public_key':'ssh-ed25519 " SECRET "'," SRV "}",
		  ERR_INVALID_TASK, "public_key" },
		{ "{" HEAD_A "," KP1 "," SRV_WITH(AUTH_PW) ",'expires_at':'" SECRET "'}",
		  ERR_INVALID_TASK, "expires_at" },
	};
	(void)state;
	refused_all(bad, ELEMENTSOF(bad));
}

/* cJSON's copies of the secret are wiped before they are freed: a free
 * hook looks into every block cJSON gives back. */
static bool secret_freed;

static void free_looking(void *p)
{
	if (p && memmem(p, malloc_usable_size(p), SECRET, strlen(SECRET)))
		secret_freed = true;
	free(p);
}

static void test_secret_wiped(void **state)
{
	static const char *const tasks[] = {
		ASSOC_SRV(AUTH_PW),
		ASSOC_SRV("'auth':{'type':'keypair','key':'---\\n" SECRET "\\n---'}"),
		ASSOC_SRV("'auth':{'type':'nope','key':'" SECRET "'}"),
		ASSOC_SRV(AUTH_PW ",'port':0"),
		ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "','key':'" SECRET "'}"),
		ASSOC_SRV(AUTH_PW ",'authentication':{'type':'password','key':'" SECRET "'}"),
		ASSOC_SRV("'auth':{'type':'password','key':'" SECRET "','x':'" SECRET "'}"),
		ASSOC_SRV(AUTH_PW) " x",
		ASSOC_SRV(AUTH_PW) "{}",
		"{" HEAD_A ",'bogus':'" SECRET "'," SRV "}",
	};
	cJSON_Hooks hooks = { .malloc_fn = malloc, .free_fn = free_looking };
	(void)state;

	/* The hook sees a secret that nobody wiped. */
	cJSON_InitHooks(&hooks);
	secret_freed = false;
	cJSON_Delete(cJSON_Parse("{\"key\":\"" SECRET "\"}"));
	assert_true(secret_freed);

	for (size_t i = 0; i < ELEMENTSOF(tasks); i++) {
		struct task t;
		struct result res;
		char *j = json(tasks[i]);
		secret_freed = false;
		int r = parse_raw(j, strlen(j), &t, &res);
		if (secret_freed)
			print_error("not wiped (r=%d, %s): %s\n", r, res.msg, j);
		assert_false(secret_freed);
		task_free(&t);
		result_free(&res);
		free(j);
	}
	cJSON_InitHooks(NULL);
}

static void test_result_init_free(void **state)
{
	struct result res;
	(void)state;
	memset(&res, 0x5a, sizeof(res));
	result_init(&res);
	assert_string_equal(res.task_id, "");
	assert_null(res.server_id);
	assert_int_equal(res.code, ERR_NONE);
	assert_string_equal(res.msg, "");
	assert_int_equal(res.warnings.n, 0);
	assert_int_equal(res.duration_ms, -1);

	assert_int_equal(result_set_server_id(&res, "srv-1"), 0);
	assert_int_equal(result_warn(&res, "w"), 0);
	result_fail(&res, ERR_TIMEOUT, "late");
	res.duration_ms = 5;
	result_free(&res);
	assert_null(res.server_id);
	assert_null(res.warnings.v);
	assert_int_equal(res.code, ERR_NONE);
	assert_int_equal(res.duration_ms, -1);
	result_free(&res);
}

static void test_result_fail(void **state)
{
	struct result res;
	(void)state;
	result_init(&res);
	assert_int_equal(result_fail(&res, ERR_IO_ERROR, "write %s: %d", "x", 28), -1);
	assert_int_equal(res.code, ERR_IO_ERROR);
	assert_string_equal(res.msg, "write x: 28");

	result_fail(&res, ERR_PROBE_FAILED, "a\nb\tc\rd\x1b[0m\x7f" "e");
	assert_int_equal(res.code, ERR_PROBE_FAILED);
	assert_string_equal(res.msg, "a?b?c?d?[0m?e");

	/* Cut to the buffer, and not inside a UTF-8 sequence. */
	char *long_msg = repeat('m', RESULT_MSG_MAX - 2);
	result_fail(&res, ERR_INVALID_TASK, "%s\xc3\xa9", long_msg);
	assert_int_equal(strlen(res.msg), RESULT_MSG_MAX - 2);
	result_fail(&res, ERR_INVALID_TASK, "%s\xe2\x82\xac", long_msg);
	assert_int_equal(strlen(res.msg), RESULT_MSG_MAX - 2);
	result_fail(&res, ERR_INVALID_TASK, "%sx\xc3\xa9", long_msg);
	assert_int_equal(strlen(res.msg), RESULT_MSG_MAX - 1);
	assert_int_equal(res.msg[RESULT_MSG_MAX - 2], 'x');
	free(long_msg);
	long_msg = repeat('m', RESULT_MSG_MAX - 3);
	result_fail(&res, ERR_INVALID_TASK, "%s\xc3\xa9xyz", long_msg);
	assert_int_equal(strlen(res.msg), RESULT_MSG_MAX - 1);
	assert_memory_equal(res.msg + RESULT_MSG_MAX - 3, "\xc3\xa9", 2);
	free(long_msg);
	result_free(&res);
}

static void test_result_warn(void **state)
{
	struct result res;
	(void)state;
	result_init(&res);
	assert_int_equal(result_warn(&res, "sshd reload took %d ms", 1500), 0);
	assert_int_equal(result_warn(&res, "two\nlines"), 0);
	assert_int_equal(res.warnings.n, 2);
	assert_string_equal(res.warnings.v[0], "sshd reload took 1500 ms");
	assert_string_equal(res.warnings.v[1], "two?lines");
	assert_int_equal(res.code, ERR_NONE);
	result_free(&res);
}

static void test_result_server_id(void **state)
{
	struct result res;
	(void)state;
	result_init(&res);
	assert_int_equal(result_set_server_id(&res, "a"), 0);
	assert_string_equal(res.server_id, "a");
	assert_int_equal(result_set_server_id(&res, "b"), 0);
	assert_string_equal(res.server_id, "b");
	assert_int_equal(result_set_server_id(&res, NULL), 0);
	assert_null(res.server_id);
	result_free(&res);
}

static void check_to_json(const struct result *res, const char *want)
{
	char *s = result_to_json(res);
	char *w = json(want);
	assert_non_null(s);
	assert_string_equal(s, w);
	free(s);
	free(w);
}

static void test_result_to_json(void **state)
{
	struct result res;
	(void)state;
	result_init(&res);
	check_to_json(&res, "{'task_id':'','server_id':'','status':'SUCCESS'}");

	memcpy(res.task_id, "t-1", 4);
	assert_int_equal(result_set_server_id(&res, "srv-1"), 0);
	res.duration_ms = 0;
	check_to_json(&res, "{'task_id':'t-1','server_id':'srv-1','status':'SUCCESS','duration_ms':0}");

	result_fail(&res, ERR_WRONG_SERVER, "server.id \"x\" is not this VM (%s)", "y\\z");
	assert_int_equal(result_warn(&res, "first"), 0);
	res.duration_ms = 1234;
	check_to_json(&res, "{'task_id':'t-1','server_id':'srv-1','status':'FAILED',"
			    "'error_code':'KPS.AGENT.WRONG_SERVER',"
			    "'error_msg':'server.id \\'x\\' is not this VM (y\\\\z)',"
			    "'warnings':['first'],'duration_ms':1234}");

	res.code = ERR_COUNT;
	assert_null(result_to_json(&res));
	result_free(&res);
}

static void test_result_round_trip(void **state)
{
	struct result res, back;
	(void)state;
	result_init(&res);
	memcpy(res.task_id, "aee8d2fe-5484-4753-9177-5a38dc15546c", 37);
	assert_int_equal(result_set_server_id(&res, "d76baba7-ef09-40a2-87ff-3eafec0696e7"), 0);
	result_fail(&res, ERR_PROBE_FAILED, "sshd still offers password login to \"root\"");
	assert_int_equal(result_warn(&res, "w1"), 0);
	assert_int_equal(result_warn(&res, "caf\xc3\xa9 \"q\""), 0);
	res.duration_ms = 999999999999999LL;

	char *s = result_to_json(&res);
	assert_non_null(s);
	assert_int_equal(result_from_json(s, strlen(s), &back), 0);
	assert_string_equal(back.task_id, res.task_id);
	assert_string_equal(back.server_id, res.server_id);
	assert_int_equal(back.code, ERR_PROBE_FAILED);
	assert_string_equal(back.msg, res.msg);
	assert_int_equal(back.warnings.n, 2);
	assert_string_equal(back.warnings.v[1], "caf\xc3\xa9 \"q\"");
	assert_int_equal(back.duration_ms, res.duration_ms);
	char *again = result_to_json(&back);
	assert_string_equal(again, s);
	free(again);
	free(s);
	result_free(&back);
	result_free(&res);

	/* Every code, and SUCCESS. */
	for (int c = ERR_NONE; c < ERR_COUNT; c++) {
		result_init(&res);
		memcpy(res.task_id, "t", 2);
		if (c != ERR_NONE)
			result_fail(&res, (enum error_code)c, "m%d", c);
		s = result_to_json(&res);
		assert_non_null(s);
		assert_int_equal(result_from_json(s, strlen(s), &back), 0);
		assert_int_equal(back.code, c);
		assert_string_equal(back.msg, res.msg);
		assert_null(back.server_id);
		assert_int_equal(back.duration_ms, -1);
		assert_int_equal(back.warnings.n, 0);
		free(s);
		result_free(&back);
		result_free(&res);
	}
}

static void test_result_from_json_tolerant(void **state)
{
	struct result res;
	(void)state;
	char *j = json("{'extra':[1,{}],'task_id':'t-1','server_id':'','status':'SUCCESS',"
		       "'error_code':7,'duration_ms':12.0,'note':null}");
	assert_int_equal(result_from_json(j, strlen(j), &res), 0);
	assert_string_equal(res.task_id, "t-1");
	assert_null(res.server_id);
	assert_int_equal(res.code, ERR_NONE);
	assert_int_equal(res.duration_ms, 12);
	result_free(&res);
	free(j);

	/* A message is made one line and cut to size on the way in too. */
	char *m = repeat('m', 1000);
	char *q = NULL;
	assert_true(asprintf(&q, "{'task_id':'t','server_id':'s','status':'FAILED',"
				 "'error_code':'KPS.AGENT.TIMEOUT','error_msg':'a\\nb%s',"
				 "'warnings':['x\\ty']}", m) > 0);
	j = json(q);
	assert_int_equal(result_from_json(j, strlen(j), &res), 0);
	assert_int_equal(res.code, ERR_TIMEOUT);
	assert_int_equal(strlen(res.msg), RESULT_MSG_MAX - 1);
	assert_memory_equal(res.msg, "a?bmmm", 6);
	assert_string_equal(res.warnings.v[0], "x?y");
	result_free(&res);
	free(j);
	free(q);
	free(m);
}

static void test_result_from_json_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"nope",
		"[]",
		"{}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS'} x",
		"{'server_id':'s','status':'SUCCESS'}",
		"{'task_id':'t','status':'SUCCESS'}",
		"{'task_id':'t','server_id':'s'}",
		"{'task_id':'t','server_id':'s','status':'DONE'}",
		"{'task_id':'t','server_id':'s','status':'success'}",
		"{'task_id':'t','server_id':'s','status':1}",
		"{'task_id':1,'server_id':'s','status':'SUCCESS'}",
		"{'task_id':'a/b','server_id':'s','status':'SUCCESS'}",
		"{'task_id':'t','server_id':null,'status':'SUCCESS'}",
		"{'task_id':'t','server_id':'s\\n','status':'SUCCESS'}",
		"{'task_id':'t','server_id':'s','status':'FAILED'}",
		"{'task_id':'t','server_id':'s','status':'FAILED','error_msg':'m'}",
		"{'task_id':'t','server_id':'s','status':'FAILED','error_code':'KPS.AGENT.TIMEOUT'}",
		"{'task_id':'t','server_id':'s','status':'FAILED','error_code':'KPS.AGENT.NOPE',"
		"'error_msg':'m'}",
		"{'task_id':'t','server_id':'s','status':'FAILED','error_code':'KPS.AGENT.TIMEOUT',"
		"'error_msg':5}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','warnings':'w'}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','warnings':[1]}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','duration_ms':'5'}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','duration_ms':-1}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','duration_ms':1.5}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','duration_ms':1e300}",
		"{'task_id':'t','server_id':'s','status':'SUCCESS','duration_ms':1e15}",
	};
	struct result res;
	(void)state;
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *j = json(bad[i]);
		int r = result_from_json(j, strlen(j), &res);
		if (r != -EINVAL)
			print_error("accepted (%d): %s\n", r, j);
		assert_int_equal(r, -EINVAL);
		/* Nothing is left behind to free. */
		assert_null(res.server_id);
		assert_null(res.warnings.v);
		free(j);
	}
	static const char nul[] = "{\"task_id\":\"t\",\"server_id\":\"\",\"status\":\"SUCCESS\"}\0";
	assert_int_equal(result_from_json(nul, sizeof(nul) - 1, &res), -EINVAL);
	assert_int_equal(result_from_json(nul, sizeof(nul) - 2, &res), 0);
	result_free(&res);
	assert_int_equal(result_from_json(NULL, 0, &res), -EINVAL);
}

/* key_expires_at and requester (CONTRACT 3): checked like every field. */
static void test_key_expiry_requester(void **state)
{
	struct task t;
	struct result res;
	(void)state;
	accepted(ASSOC_WITH("'key_expires_at':'2026-12-31T00:00:00Z','requester':'iam:user/alice req-5f1c'"), &t,
		 &res);
	assert_int_equal(t.key_expires_at, 1798675200);
	assert_string_equal(t.requester, "iam:user/alice req-5f1c");
	task_free(&t);
	assert_null(t.requester);
	assert_int_equal(t.key_expires_at, 0);
	result_free(&res);
	accepted(ASSOC_WITH("'requester':'\u00e9quipe'"), &t, &res);
	task_free(&t);
	result_free(&res);
	char long_ok[REQUESTER_MAX + 1], *q = NULL;
	memset(long_ok, 'r', REQUESTER_MAX);
	long_ok[REQUESTER_MAX] = '\0';
	assert_true(asprintf(&q, ASSOC_WITH("'requester':'%s'"), long_ok) > 0);
	accepted_free(q);
	free(q);
	static const struct refusal bad[] = {
		{ ASSOC_WITH("'key_expires_at':'2026-12-31'"), ERR_INVALID_TASK, "key_expires_at must be" },
		{ ASSOC_WITH("'key_expires_at':1798675200"), ERR_INVALID_TASK, "must be a string" },
		{ ASSOC_WITH("'key_expires_at':'1969-12-31T00:00:00Z'"), ERR_INVALID_TASK, "key_expires_at must be" },
		{ ASSOC_WITH("'key_expires_at':'10000-01-01T00:00:00Z'"), ERR_INVALID_TASK, "key_expires_at must be" },
		{ "{" HEAD_D "," SRV ",'key_expires_at':'2026-12-31T00:00:00Z'}", ERR_INVALID_TASK, "associate only" },
		{ ASSOC_WITH("'requester':''"), ERR_INVALID_TASK, "requester must be 1-128" },
		{ ASSOC_WITH("'requester':'a\\nb'"), ERR_INVALID_TASK, "requester must be" },
		{ ASSOC_WITH("'requester':7"), ERR_INVALID_TASK, "requester must be a string" },
	};
	refused_all(bad, ELEMENTSOF(bad));
	memset(long_ok, 'r', REQUESTER_MAX);
	assert_true(asprintf(&q, ASSOC_WITH("'requester':'%sx'"), long_ok) > 0);
	refused(q, ERR_INVALID_TASK, "requester must be");
	free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_code_names),
		cmocka_unit_test(test_associate_full),
		cmocka_unit_test(test_associate_defaults),
		cmocka_unit_test(test_public_key_normalised),
		cmocka_unit_test(test_associate_keypairs),
		cmocka_unit_test(test_disassociate_all),
		cmocka_unit_test(test_disassociate_named),
		cmocka_unit_test(test_auth_keypair_multiline),
		cmocka_unit_test(test_auth_alias),
		cmocka_unit_test(test_auth_key_limits),
		cmocka_unit_test(test_auth_key_control_chars),
		cmocka_unit_test(test_auth_type),
		cmocka_unit_test(test_port),
		cmocka_unit_test(test_disable_password),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_task_id),
		cmocka_unit_test(test_ids_reported_on_refusal),
		cmocka_unit_test(test_missing_fields),
		cmocka_unit_test(test_wrong_types),
		cmocka_unit_test(test_unknown_fields),
		cmocka_unit_test(test_unknown_field_echo),
		cmocka_unit_test(test_duplicate_keys),
		cmocka_unit_test(test_nul_escape),
		cmocka_unit_test(test_raw_nul),
		cmocka_unit_test(test_length_bounds_text),
		cmocka_unit_test(test_size_limit),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_trailing_data),
		cmocka_unit_test(test_not_json),
		cmocka_unit_test(test_not_object),
		cmocka_unit_test(test_action),
		cmocka_unit_test(test_precedence),
		cmocka_unit_test(test_public_key_refused),
		cmocka_unit_test(test_keypair_name),
		cmocka_unit_test(test_keypairs_refused),
		cmocka_unit_test(test_keypairs_count),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_expires_at),
		cmocka_unit_test(test_key_expiry_requester),
		cmocka_unit_test(test_secret_never_in_message),
		cmocka_unit_test(test_secret_wiped),
		cmocka_unit_test(test_result_init_free),
		cmocka_unit_test(test_result_fail),
		cmocka_unit_test(test_result_warn),
		cmocka_unit_test(test_result_server_id),
		cmocka_unit_test(test_result_to_json),
		cmocka_unit_test(test_result_round_trip),
		cmocka_unit_test(test_result_from_json_tolerant),
		cmocka_unit_test(test_result_from_json_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
