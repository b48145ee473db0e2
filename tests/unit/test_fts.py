"""FTS helpers: catalog diff on the real captures, probe timeout, SQL by version."""
import json
import os

import pytest

from ansible_collections.gpops.greenplum.plugins.module_utils.act import fts_probe as fts
from ansible_collections.gpops.greenplum.plugins.module_utils.act import sync_replication_switch as replication
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    SegmentConfig, rows_as_dicts)

from conftest import SHARED_FIXTURES


def segments(name):
    path = os.path.join(SHARED_FIXTURES, name + ".json")
    if not os.path.exists(path):
        pytest.skip("capture %s not present" % path)
    with open(path) as f:
        q = json.load(f)["queries"]["gp_segment_configuration"]
    return [SegmentConfig.from_row(r) for r in rows_as_dicts(q["columns"], q["rows"])]


def test_diff_of_the_fts_mark_down():
    before = segments("mirror_down_syncrep_wait__long_wait_before_mark_down")
    after = segments("mirror_down_syncrep_wait__after_fts_mark_down")
    assert fts.catalog_diff(before, after) == [
        {"dbid": 2, "content": 0, "changes": {"mode": ["s", "n"]}},
        {"dbid": 5, "content": 0, "changes": {"status": ["u", "d"], "mode": ["s", "n"]}},
    ]
    # Recovery brings both back; a probe inside the grace period changes nothing.
    back = segments("mirror_down_syncrep_wait__after_recovery")
    assert [c["dbid"] for c in fts.catalog_diff(after, back)] == [2, 5]
    within = segments("mirror_down_syncrep_wait__after_fts_probe_grace30_within_grace")
    assert fts.catalog_diff(before, within) == []


def test_diff_added_and_removed_rows():
    before = segments("mirror_down_syncrep_wait")
    after = [s for s in before if s.dbid != 8]
    assert fts.catalog_diff(before, after) == [{"dbid": 8, "content": -1, "changes": {}, "removed": True}]
    assert fts.catalog_diff(after, before) == [{"dbid": 8, "content": -1, "changes": {}, "added": True}]


def test_probe_timeout_allows_every_retry():
    defaults = dict(fts.FTS_DEFAULTS)
    # 20 s x (5 + 1) = 120 s, plus one retry interval per retry and a margin.
    assert fts.probe_timeout(defaults) == 120 + 5 + fts.PROBE_MARGIN_S
    small = dict(defaults, gp_fts_probe_timeout=2, gp_fts_probe_retries=1)
    assert fts.probe_timeout(small) == 4 + 1 + fts.PROBE_MARGIN_S


def test_replication_sql_by_postgres_version():
    gp7 = sql.replication_positions(120012)
    assert "pg_current_wal_lsn()" in gp7 and "flush_lsn" in gp7 and "xlog" not in gp7
    gp6 = sql.replication_positions(90426)
    assert "pg_current_xlog_location()" in gp6 and "flush_location" in gp6 and "_lsn," not in gp6


def test_switch_statements_never_reset():
    for method in (replication.ALTER_SYSTEM, replication.GP_REPLICATION_CONF):
        for value in ("", "*"):
            text = " ".join(replication.switch_statements(method, value, "/data/p0"))
            assert "RESET" not in text.upper() and "pg_reload_conf()" in text
    assert replication.switch_statements("alter_system", "", "/d")[0] == \
        "ALTER SYSTEM SET synchronous_standby_names = ''"
    assert "/data/p0/gp_replication.conf" in replication.switch_statements("gp_replication_conf", "*", "/data/p0")[0]


class _Server:
    def __init__(self, flavor, major):
        self.flavor, self.major = flavor, major


def test_choose_method(tmp_path):
    gp7 = _Server("greenplum", 7)
    auto = {"sourcefile": "/d/postgresql.auto.conf"}
    assert replication.choose_method("auto", gp7, auto, str(tmp_path)) == "alter_system"
    assert replication.choose_method("auto", _Server("greenplum", 6), auto, "/nowhere") == "gp_replication_conf"
    assert replication.choose_method("auto", gp7, {"sourcefile": "/d/gp_replication.conf"}, "/x") == \
        "gp_replication_conf"
    (tmp_path / "gp_replication.conf").write_text("")
    assert replication.choose_method("auto", gp7, {"sourcefile": None}, str(tmp_path)) == "gp_replication_conf"
    assert replication.choose_method("alter_system", _Server("greenplum", 6), auto, "/x") == "alter_system"


def test_gp_replication_conf_written_atomically(tmp_path):
    conf = tmp_path / "gp_replication.conf"
    conf.write_text("synchronous_standby_names = '*'\n")
    conf.chmod(0o640)
    replication._write_gp_replication_conf(str(tmp_path), "")
    assert conf.read_text() == "synchronous_standby_names = ''\n"
    assert conf.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["gp_replication.conf"]
    with pytest.raises(OSError, match="segment host"):
        replication._write_gp_replication_conf(str(tmp_path / "missing"), "")
