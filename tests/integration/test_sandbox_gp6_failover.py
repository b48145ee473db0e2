"""A second, one-segment sandbox (base port + 50, base dir + '-gp6') with the
Greenplum 6 replication conf: FTS switches sync replication in gp_replication.conf,
and fails a dead primary over to its in-sync mirror."""
import os
import time

import pytest

from gpsandbox import Sandbox, SandboxError, scenarios

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gp6(sandbox):
    sb = Sandbox(sandbox.base_dir + "-gp6", sandbox.base_port + 50)
    sb.stop()
    sb.start(segments=1, mirrors=True, replication_conf="gp6")
    yield sb
    sb.stop()


def conf_value(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith("synchronous_standby_names")]
    return lines[-1].split("=", 1)[1].strip() if lines else None


def test_gp6_sync_replication_lives_in_gp_replication_conf(gp6):
    datadir = gp6.datadir(0)
    assert conf_value(os.path.join(datadir, "gp_replication.conf")) == "'*'"
    assert conf_value(os.path.join(datadir, "postgresql.auto.conf")) is None
    assert gp6.query(0, "SHOW synchronous_standby_names") == [("*",)]


def test_gp6_fts_switches_gp_replication_conf(gp6):
    path = os.path.join(gp6.datadir(0), "gp_replication.conf")
    with scenarios.mirror_down_syncrep(gp6, content=0) as sc:
        gp6.fts.resume()
        assert all(o["ok"] for o in sc.wait(30).values())
        assert conf_value(path) == "''"
        assert gp6.query(0, "SHOW synchronous_standby_names") == [("",)]
    assert conf_value(path) == "'*'"
    assert gp6.leftovers() == []


def test_fts_fails_a_dead_primary_over_to_its_mirror(gp6):
    gp6.create_table("gpsb_fo", "id int, val int", "id", rows=[(1, 1), (2, 2)])
    gp6.stop_node(0, "p")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        roles = gp6.query(-1, "SELECT dbid, role, status, mode FROM gp_segment_configuration "
                              "WHERE content = 0 ORDER BY dbid")
        if roles[0][1] == "m":
            break
        time.sleep(0.5)
    assert roles == [(2, "m", "d", "n"), (3, "p", "u", "n")]
    history = [r[0] for r in gp6.query(-1, "SELECT description FROM gp_configuration_history "
                                           "ORDER BY time DESC, dbid LIMIT 2")]
    assert sorted(history) == [
        "FTS: update role, status, and mode for dbid 2 with contentid 0 to m, d, and n",
        "FTS: update role, status, and mode for dbid 3 with contentid 0 to p, u, and n"]
    assert gp6.conninfo(0)["port"] == gp6.base_port + 3
    with gp6.connect() as conn:  # dispatch follows the catalog to the new primary
        assert conn.execute("UPDATE gpsb_fo SET val = val + 1").rowcount == 2
    assert gp6.query(0, "SHOW synchronous_standby_names") == [("",)]
    assert gp6.leftovers() == ["primary0 is not running"]


def test_port_in_use_and_missing_postgresql_are_clear_errors(gp6, tmp_path):
    clash = Sandbox(str(tmp_path / "clash"), gp6.base_port)
    with pytest.raises(SandboxError, match="port %d .* is in use" % gp6.base_port):
        clash.start(segments=1, mirrors=False)
    missing = Sandbox(str(tmp_path / "missing"), gp6.base_port + 20, pg_bin=str(tmp_path / "nopg"))
    with pytest.raises(SandboxError, match="not found in .*install postgresql-15"):
        missing.start(segments=1)
    with pytest.raises(SandboxError, match="replication_conf must be one of gp7, gp6"):
        missing.start(replication_conf="gp5")
