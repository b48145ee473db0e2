"""Every hostile input of issue 13, through Ansible for real: the task fails with a ``msg``
naming the parameter and what is allowed, no traceback, nothing changed. Validation runs
before any connection (plugins/module_utils/common/validation.py), so no cluster is needed: the
connection options point at a port where nothing listens, and a module that got past
validation would fail with "connection refused" instead."""
import os

import pytest

from playbook import run_tasks

NOWHERE = dict(login_host="127.0.0.1", login_port=1, connect_timeout=2)
CONNECTED = {
    "gp_deadlock": {"state": "resolved"}, "gp_hang_info": {}, "gp_locks_info": {}, "gp_segment_info": {},
    "gp_prepared_xacts": {"state": "absent"}, "gp_fts_probe": {}, "gp_nodelock": {"state": "absent"},
    "gp_sync_replication": {"state": "off"}, "gp_log_info": {"source": "coordinator"},
}
NESTED = "(" * 500 + "usename" + ")" * 500


def cases(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("keep me\n")
    out = []
    for module, args in sorted(CONNECTED.items()):
        for value in ("inf", "1e30", "nan"):
            out.append(((module, dict(args, statement_timeout=value, **NOWHERE)),
                        "statement_timeout must be a finite number seconds > 0 and <= 86400"))
    out += [
        (("gp_fts_probe", dict(NOWHERE, timeout="inf")), "timeout must be a finite number seconds > 0 and <= 3600"),
        (("gp_deadlock", dict(NOWHERE, state="resolved", cancel_grace="nan")),
         "cancel_grace must be a finite number seconds >= 0 and <= 3600, got nan"),
        (("gp_hang_info", dict(NOWHERE, prepared_xact_age="-inf")), "prepared_xact_age must be a finite number"),
        (("gp_prepared_xacts", dict(NOWHERE, min_age="1e30")), "min_age must be a finite number"),
        (("gp_deadlock", dict(NOWHERE, never_choose=NESTED)), "never_choose: JMESPath expression nested 500"),
        (("gp_hang_info", dict(NOWHERE, never_choose="usename ==")), "never_choose: invalid JMESPath expression"),
        (("gp_nodelock", dict(NOWHERE, state="absent", slon_application_name="(")),
         "slon_application_name: invalid regular expression '(': missing ), unterminated subpattern"),
        (("gp_pidfile", dict(paths=[str(tmp_path / "postmaster.pid")], state="absent", expected_command="(")),
         "expected_command: invalid regular expression '(': missing ), unterminated subpattern"),
        (("gp_lockfile_info", dict(poll_window="inf")), "poll_window must be a finite number seconds >= 0 and <= 60"),
        (("gp_report", dict(hang_info={"findings": [], "snapshot": {}}, dest=str(not_a_dir))),
         "dest: %s exists and is not a directory" % not_a_dir),
        (("gp_report", dict(hang_info={"findings": [], "snapshot": {}}, dest=str(not_a_dir / "sub"))),
         "dest: %s cannot be created: %s is not a directory" % (not_a_dir / "sub", not_a_dir)),
        (("gp_openmetrics", dict(hang_info={"findings": []}, dest=str(not_a_dir))),
         "dest: %s exists and is not a directory" % not_a_dir),
        (("gp_log_info", dict(NOWHERE, source="coordinator", deadline="inf")), "deadline must be a finite number"),
        (("gp_segment_info", dict(NOWHERE, max_workers=0)), "max_workers must be a finite number connections >= 1"),
    ]
    return out, not_a_dir


def test_hostile_inputs_fail_naming_the_parameter_and_change_nothing(tmp_path):
    pidfile = tmp_path / "postmaster.pid"
    pidfile.write_text("999999\n")
    listed, not_a_dir = cases(tmp_path)
    results = run_tasks([task for task, _ in listed])
    for (task, words), result in zip(listed, results):
        assert result.get("failed") is True, (task, result)
        assert words in result["msg"], (task, result["msg"])
        assert not result.get("changed"), task
        assert "Traceback" not in result.get("module_stderr", "") + result.get("exception", ""), task
        assert "connection refused" not in result["msg"], task  # refused before any connection
    assert pidfile.read_text() == "999999\n" and not_a_dir.read_text() == "keep me\n"
    assert not os.path.exists(str(not_a_dir) + "/sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any directory")
def test_an_unwritable_report_dest_is_named(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result, = run_tasks([("gp_report", dict(hang_info={"findings": [], "snapshot": {}}, dest=str(locked)))])
    assert result["failed"] and result["msg"].startswith("dest: directory %s is not writable" % locked)
