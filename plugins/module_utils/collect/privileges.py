# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the login role may see and do, read once at the start of a module, so that a
missing privilege is a clear refusal naming it, never a fact read as absent or false.

PostgreSQL (and so Greenplum 7 and Cloudberry) hides from a role that is neither a
superuser nor a member of ``pg_read_all_stats`` the identity of other roles' sessions
(``pg_stat_activity``: ``query``, ``backend_start``, ``xact_start``, ``state`` are NULL)
and every column of ``pg_stat_replication`` but ``pid`` (src/backend/utils/adt/pgstatfuncs.c,
``HAS_PGSTAT_PERMISSIONS``; src/backend/replication/walsender.c, ``pg_stat_get_wal_senders``);
``pg_cancel_backend`` / ``pg_terminate_backend`` of another role's backend need
``pg_signal_backend`` (and a superuser's backend a superuser;
src/backend/storage/ipc/signalfuncs.c); ``ALTER SYSTEM`` and ``pg_reload_conf()`` need a
superuser (src/backend/utils/misc/guc.c, ``AlterSystemSetConfigFile``). Greenplum 6
(PostgreSQL 9.4) has none of the predefined roles: there only a superuser sees and
signals other roles' sessions. Roles are cluster-wide in Greenplum (the coordinator's
catalog is dispatched), so reading them on the coordinator answers for every node.

Public API:

- ``PREDEFINED_ROLES``: the roles looked up.
- ``Privileges``: ``login_user``, ``superuser`` (bool), ``member_of`` (frozenset of
  ``PREDEFINED_ROLES``); properties ``sees_sessions``, ``signals_sessions``,
  ``reads_replication``, ``alters_system``.
- ``read_privileges(conn) -> Privileges`` (one statement, ``sql.LOGIN_PRIVILEGES``;
  raises ``psycopg.Error``).
- ``missing(privileges, needs) -> str or None``: for ``needs`` (any of ``NEEDS``), the
  message naming the login role and each missing privilege with what it is for.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql

PREDEFINED_ROLES = ("pg_read_all_stats", "pg_signal_backend", "pg_monitor")

# need -> (property of Privileges, what to grant, what it is for)
NEEDS = {
    "see_sessions": ("sees_sessions", "superuser or membership in pg_read_all_stats (or pg_monitor)",
                     "to see other roles' sessions (pg_stat_activity query, backend_start, xact_start)"),
    "signal_sessions": ("signals_sessions", "superuser or membership in pg_signal_backend",
                        "to cancel or terminate other roles' backends"),
    "read_replication": ("reads_replication", "superuser or membership in pg_read_all_stats (or pg_monitor)",
                         "to read pg_stat_replication (its columns are NULL to other roles, which would "
                         "make a streaming mirror look not streaming)"),
    "alter_system": ("alters_system", "superuser",
                     "to switch synchronous_standby_names (alter system, reload the configuration)"),
    "rollback_prepared": ("superuser", "superuser",
                          "for ROLLBACK PREPARED of transactions other roles prepared"),
    "terminate_walsender": ("superuser", "superuser",
                            "to terminate a walsender (a backend of the replication superuser)"),
}


@dataclasses.dataclass(frozen=True)
class Privileges:
    """The login role's standing; see the module docstring for what each property gates."""

    login_user: str
    superuser: bool
    member_of: frozenset = frozenset()

    @property
    def sees_sessions(self):
        return self.superuser or bool({"pg_read_all_stats", "pg_monitor"} & self.member_of)

    @property
    def signals_sessions(self):
        return self.superuser or "pg_signal_backend" in self.member_of

    @property
    def reads_replication(self):
        return self.sees_sessions

    @property
    def alters_system(self):
        return self.superuser

    def as_dict(self):
        return {"login_user": self.login_user, "superuser": self.superuser,
                "member_of": sorted(self.member_of)}


def read_privileges(conn):
    """The login role's ``Privileges`` over ``conn`` (any database, any node)."""
    with conn.cursor() as cur:
        cur.execute(sql.LOGIN_PRIVILEGES, (list(PREDEFINED_ROLES),))
        user, superuser, member_of = cur.fetchone()
    return Privileges(login_user=user, superuser=bool(superuser), member_of=frozenset(member_of or ()))


def missing(privileges, needs):
    """None when ``privileges`` cover every need in ``needs`` (keys of ``NEEDS``), else
    ``login_user <name> lacks <grant> (<why>); ...``."""
    lacking = []
    for need in needs:
        prop, grant, why = NEEDS[need]
        if not getattr(privileges, prop) and (grant, why) not in lacking:
            lacking.append((grant, why))
    if not lacking:
        return None
    return "login_user %s lacks %s" % (privileges.login_user, "; and ".join(
        "%s (%s)" % (grant, why) for grant, why in lacking))
