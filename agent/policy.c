/* [policy] applied to one task. The rules are few and each refusal names
 * its rule, so an operator reading a FAILED result knows which line of the
 * image's configuration said no. */
#include "policy.h"

static bool sshd_ports_are(const struct sshd_settings *s, int port)
{
	return s->n_ports == 1 && s->ports[0] == port;
}

int policy_check(const struct config *cfg, const struct task *t, const struct sshd_settings *s, struct plan *plan,
		 struct result *res)
{
	const struct plan_user *u = &plan->user;
	if (cfg->policy_users.n > 0 && !strv_contains(&cfg->policy_users, u->name))
		return result_fail(res, ERR_POLICY_DENIED, "[policy] users: user %s is not one tasks may name",
				   u->name);
	/* By uid: an alias of root (toor) is root all the same. */
	if (!cfg->allow_root && u->uid == 0)
		return result_fail(res, ERR_POLICY_DENIED, "[policy] allow_root = no: user %s is root", u->name);
	if (!cfg->allow_port && t->port && !sshd_ports_are(s, t->port))
		return result_fail(res, ERR_POLICY_DENIED, "[policy] allow_port = no: the task moves sshd to port %d",
				   t->port);
	if (cfg->allow_password_login)
		return 0;
	if (t->action == TASK_ASSOCIATE && t->disable_password == 0)
		return result_fail(res, ERR_POLICY_DENIED,
				   "[policy] allow_password_login = no: the task turns password login on");
	if (t->action == TASK_DISASSOCIATE) {
		plan->keep_password = true;
		result_warn(res, "[policy] allow_password_login = no: the keys were removed, password login was "
				 "left as it is (%s)", s->password ? "on" : "off");
	}
	return 0;
}
