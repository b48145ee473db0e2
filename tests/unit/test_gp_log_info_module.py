"""gp_log_info through Ansible for real, without a cluster: the file source over the
captured Greenplum 7 logs (laid out as data directories), check mode, and bad input
(a clear msg or counted skipped lines, never a traceback); then gp_report's timeline."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "integration"))

from playbook import run_tasks  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "gp7_logs")
NO_SERVER = {"PGHOST": "127.0.0.1", "PGPORT": "9", "PGUSER": "nobody"}   # nothing listens


def datadir(tmp_path, scenario, name, extra=""):
    d = tmp_path / scenario / name.replace(".csv", "")
    (d / "log").mkdir(parents=True)
    shutil.copy(os.path.join(FIXTURES, scenario, name), str(d / "log" / "gpdb-2026-12-05_090400.csv"))
    with open(os.path.join(FIXTURES, scenario, "nodes.json")) as f:
        node = json.load(f)[name]
    (d / "internal.auto.conf").write_text("gp_dbid=%d\n" % node["dbid"])
    if node["role"] == "m":
        (d / "standby.signal").write_text("")
    if extra:
        with open(str(d / "log" / "gpdb-2026-12-05_090400.csv"), "a") as f:
            f.write(extra)
    return str(d)


def test_files_check_mode_and_bad_input(tmp_path):
    seg0 = datadir(tmp_path, "segment_panic_commit_prepared", "seg0.csv",
                   extra='2026-12-05 09:10:30.0 UTC,"x","canceling statement due to lock timeout\n')
    coord = datadir(tmp_path, "segment_panic_commit_prepared", "coordinator.csv")
    window = {"since": "2026-12-05T09:10:00Z", "until": "2026-12-05T09:11:00Z"}
    files, checked, auto_down, backwards, missing, nothing = run_tasks([
        ("gp_log_info", dict(window, source="files", data_directories=[seg0, coord], host="sdw1")),
        ("gp_log_info", dict(window, source="files", data_directories=[seg0, coord, str(tmp_path / "gone")]), True),
        ("gp_log_info", dict(window, data_directories=[coord], connect_timeout=1)),
        ("gp_log_info", {"since": "2026-12-05T09:11:00Z", "until": "2026-12-05T09:10:00Z",
                         "source": "files", "data_directories": [seg0]}),
        ("gp_log_info", dict(window, source="files", data_directories=[str(tmp_path / "gone")])),
        ("gp_log_info", dict(window, connect_timeout=1)),
    ], env=NO_SERVER)
    assert not files.get("failed"), files.get("msg")
    assert files["changed"] is False and files["source"] == "files" and files["complete"] is True
    panic, = [e for e in files["events"] if e["class"] == "panic"]
    assert panic["node"]["dbid"] == 2 and panic["node"]["host"] == "sdw1" and panic["node"]["content"] == 0
    chain = [c for c in files["chains"] if c["id"] == panic["chain"]][0]
    assert chain["started_by"] == panic["summary"] and -1 in chain["contents"]
    assert files["stats"]["skipped_lines"] == 1   # the cut line appended to seg0's file
    assert files["stats"]["skipped_examples"][0]["reason"].startswith("malformed CSV record")

    assert checked["changed"] is False and not checked.get("failed")
    assert any("does not exist" in u["error"] for u in checked["stats"]["unreadable"])

    assert auto_down["source"] == "files" and "connection refused" in auto_down["fallback_reason"]
    assert backwards["failed"] and "is not before until" in backwards["msg"]
    assert missing["failed"] and "no log file could be read" in missing["msg"] and "does not exist" in missing["msg"]
    assert nothing["failed"] and "no data_directories" in nothing["msg"]
    for r in (backwards, missing, nothing):
        assert "Traceback" not in r["msg"] and "Traceback" not in str(r.get("exception", ""))


def test_timeline_in_the_report_and_postmortem_report(tmp_path):
    seg0 = datadir(tmp_path, "qe_sigkill_restart", "seg1.csv")
    coord = datadir(tmp_path, "qe_sigkill_restart", "coordinator.csv")
    info, = run_tasks([("gp_log_info", {"since": "2026-12-05T09:06:00Z", "until": "2026-12-05T09:07:00Z",
                                        "source": "files", "data_directories": [seg0, coord]})], env=NO_SERVER)
    dest = str(tmp_path / "reports")
    written, again = run_tasks([("gp_report", {"log_info": info, "dest": dest, "cluster": "mdw"}),
                                ("gp_report", {"log_info": info, "dest": dest, "cluster": "mdw"})])
    assert not written.get("failed"), written.get("msg")
    assert written["markdown_path"].endswith("gp-timeline-mdw-20261205T090700.md")
    assert written["changed"] is True and again["changed"] is False
    with open(written["markdown_path"]) as f:
        text = f.read()
    assert "## Timeline" in text and "### Chains" in text and "terminated by signal 9" in text
    with open(written["json_path"]) as f:
        doc = json.load(f)
    assert doc["kind"] == "timeline" and doc["highest_severity"] == "critical"
    assert doc["timeline"]["chains"][0]["started_by"].startswith("content 1: server process")
