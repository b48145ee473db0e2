"""A login role whose search_path puts its own schema before pg_catalog cannot
substitute what the collection reads or the function it signals with: every
statement names its schema (plugins/module_utils/collect/sql.py). The role's schema
`shadow` holds an empty `pg_locks`, an empty `gp_dist_wait_status()` and a
`pg_cancel_backend(int, text)` that signals nothing; the deadlock is still seen
and really broken."""
import pytest
from gpsandbox import scenarios

from playbook import run_tasks

pytestmark = pytest.mark.integration

ROLE, PASSWORD = "gpops_shadowed", "shadowed"
SHADOW = [
    "CREATE SCHEMA shadow",
    "CREATE VIEW shadow.pg_locks AS SELECT * FROM pg_catalog.pg_locks WHERE false",
    "CREATE FUNCTION shadow.gp_dist_wait_status() RETURNS SETOF int LANGUAGE sql"
    " AS 'SELECT 1 WHERE false'",
    "CREATE FUNCTION shadow.pg_cancel_backend(int, text) RETURNS bool LANGUAGE sql AS 'SELECT true'",
    "ALTER ROLE %s SET search_path = shadow, pg_catalog, public" % ROLE,
]


@pytest.fixture
def shadowed_role(clean_cluster):
    nodes = [-1] + list(range(clean_cluster.state()["segments"]))
    clean_cluster.create_role(ROLE, password=PASSWORD, superuser=True)
    try:
        for content in nodes:
            with clean_cluster.connect(content, utility=True) as conn:
                for statement in SHADOW:
                    conn.execute(statement)
        yield dict(login_host="127.0.0.1", login_port=clean_cluster.base_port, login_user=ROLE,
                   login_password=PASSWORD, login_db="postgres")
    finally:
        for content in nodes:
            with clean_cluster.connect(content, utility=True) as conn:
                conn.execute("DROP SCHEMA IF EXISTS shadow CASCADE")
                conn.execute("DROP ROLE IF EXISTS %s" % ROLE)


def test_shadowing_objects_change_nothing(clean_cluster, shadowed_role):
    with scenarios.global_deadlock(clean_cluster) as dl:
        b = dl.sessions["B"]
        with clean_cluster.connect(-1, user=ROLE, password=PASSWORD) as conn:
            assert conn.execute("SELECT count(*) FROM pg_locks").fetchone()[0] == 0  # the shadow
        seen, resolved = run_tasks([
            ("gp_locks_info", dict(shadowed_role)),
            ("gp_deadlock", dict(shadowed_role, state="resolved")),
        ])
        assert not seen.get("failed"), seen.get("msg")
        assert seen["locks"] and seen["edges"]
        assert seen["analysis"]["verdict"] == "deadlock"
        assert not resolved.get("failed"), resolved.get("msg")
        assert [(x["action"], x["gxid"], x["result"]) for x in resolved["actions"]] == [
            ("cancel", b["gxid"], "done")]
        assert resolved["deadlocks_after"] == []
