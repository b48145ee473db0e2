"""gp_segment_info through Ansible on the sandbox, and the connection failures every
module of the connection layer must turn into a failed task with a clear msg:
nothing listening, wrong password, a plain PostgreSQL server."""
import pytest

from playbook import run_tasks
from stale_fixtures import PG_BIN, as_os_user, pg_factory  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

# Every module that connects, with the arguments it is run with (gp_deadlock as it
# acts: nothing may be cancelled on these error paths).
CONNECTING_MODULES = (("gp_segment_info", {}), ("gp_locks_info", {}),
                      ("gp_deadlock", {"state": "resolved"}))
PASSWORD = "s3cret-gpops"


def test_topology_from_the_pg_environment_and_options_win(clean_cluster):
    st = clean_cluster.state()
    checked, real, port_one = run_tasks([
        ("gp_segment_info", {}, True), ("gp_segment_info", {}),
        ("gp_segment_info", dict(login_port=1, connect_timeout=2))],
        env=clean_cluster.coordinator_env())
    for result in (checked, real):
        assert not result.get("failed"), result.get("msg")
        assert result["changed"] is False
        server = result["server"]
        assert (server["flavor"], server["major"]) == ("sandbox", 7)
        assert server["version_num"] == 70000 and "gpsandbox" in server["version_string"]
        segments = result["segments"]
        assert len(segments) == 1 + 2 * st["segments"]
        assert [s["content"] for s in segments if s["role"] == "p"] == list(range(-1, st["segments"]))
        assert result["summary"] == dict(
            segment_count=st["segments"], primaries_up=st["segments"], primaries_down=[],
            mirrored=True, mirrors_up=st["segments"], mirrors_down=[], not_in_sync=[],
            failed_over=[], standby=None, healthy=True)
    # An option given to the module wins over the PG* variable (PGPORT is the sandbox's).
    assert port_one.get("failed") is True and "127.0.0.1:1" in port_one["msg"]


@pytest.fixture
def plain_postgres(pg_factory):  # noqa: F811 (pytest fixture injection)
    """A plain PostgreSQL 15 server that wants a password over TCP."""
    server = pg_factory()
    server.psql("ALTER ROLE postgres PASSWORD '%s'" % PASSWORD)
    with open(server.datadir + "/pg_hba.conf", "w") as hba:
        hba.write("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
    res = as_os_user([PG_BIN + "/pg_ctl", "-D", server.datadir, "reload"])
    assert res.returncode == 0, res.stderr
    return server


def test_connection_failures_are_failed_tasks_naming_the_cause(plain_postgres):
    login = dict(plain_postgres.login(), login_password=PASSWORD, connect_timeout=3)
    where = "cannot reach coordinator (127.0.0.1:%d)" % plain_postgres.port
    cases = []
    for module, args in CONNECTING_MODULES:
        cases += [
            ((module, dict(args, **login)), "not Greenplum"),
            ((module, dict(args, **dict(login, login_password="wrong"))),
             where + ": authentication failed"),
            ((module, dict(args, login_host="127.0.0.1", login_port=1, connect_timeout=2)),
             "cannot reach coordinator (127.0.0.1:1): connection refused"),
        ]
    cases += [
        (("gp_segment_info", dict(login, connect_timeout=0)), "connect_timeout"),
        (("gp_segment_info", dict(login, statement_timeout=-5)), "statement_timeout"),
        (("gp_segment_info", dict(login, ssl_mode="sometimes")), "ssl_mode"),
    ]
    results = run_tasks([task for task, _ in cases])
    for (task, expected), result in zip(cases, results):
        assert result.get("failed") is True, (task, result)
        assert expected in result["msg"], (task, result["msg"])
        assert "wrong" not in result["msg"]  # the password never shows
        assert result.get("actions", []) == [] and result.get("changed") is False
    not_greenplum = results[0]["msg"]
    assert "PostgreSQL 15" in not_greenplum
