"""What the login role lacks, said in one message naming the privilege (privileges.py)."""
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.privileges import Privileges, missing


def test_a_role_without_privileges_is_told_every_missing_one():
    none = Privileges("app", False, frozenset())
    msg = missing(none, ("see_sessions", "signal_sessions"))
    assert msg.startswith("login_user app lacks superuser or membership in pg_read_all_stats (or pg_monitor)")
    assert "pg_signal_backend" in msg
    assert missing(none, ("read_replication", "see_sessions")).count("pg_read_all_stats") == 2  # two reasons


def test_membership_or_superuser_is_enough():
    member = Privileges("app", False, frozenset(["pg_monitor", "pg_signal_backend"]))
    assert missing(member, ("see_sessions", "signal_sessions", "read_replication")) is None
    assert "superuser" in missing(member, ("alter_system",))
    assert missing(Privileges("gpadmin", True), ("see_sessions", "alter_system", "rollback_prepared")) is None
