"""gp_report through Ansible for real (no database needed: its input is a registered
gp_hang_info result, here the one a real GP7 capture gives): check mode writes
nothing, the first run writes both files, the second changes nothing, bad input
fails naming the option."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "integration"))

from playbook import run_task  # noqa: E402  (the shared one-task playbook runner)
from triage_inputs import diagnose_capture  # noqa: E402


def _hang_info(name):
    return json.loads(json.dumps(diagnose_capture(name).as_dict()))


def test_check_mode_then_write_then_idempotent(tmp_path):
    dest = str(tmp_path / "reports")
    args = {"hang_info": _hang_info("global_deadlock_2seg"), "dest": dest, "cluster": "mdw"}
    checked = run_task("gp_report", args, check=True)
    assert checked["changed"] is True and not os.path.exists(dest)
    assert checked["json_path"] == os.path.join(dest, "gp-hang-mdw-20261121T054125.json")

    written = run_task("gp_report", args)
    assert written["changed"] is True and written["verdict"] == "hung"
    with open(written["json_path"]) as f:
        doc = json.load(f)
    assert doc["schema_version"] == 1 and doc["findings"][0]["class"] == "global_deadlock"
    assert doc["snapshot"]["taken_at"] == "2026-11-21T05:41:25.704690+00:00"
    with open(written["markdown_path"]) as f:
        assert "```mermaid\nflowchart LR" in f.read()
    assert written["summary"][0] == "mdw: HUNG (1 critical, 1 info)"

    again = run_task("gp_report", args)
    assert again["changed"] is False


def test_actions_complete_the_same_report(tmp_path):
    dest = str(tmp_path)
    args = {"hang_info": _hang_info("global_deadlock_2seg"), "dest": dest, "cluster": "mdw"}
    first = run_task("gp_report", args)
    args.update(actions=[{"action": "cancel", "target": "pid 19885", "changed": True}],
                after=_hang_info("global_deadlock_2seg__after_cancel"))
    second = run_task("gp_report", args)
    assert second["changed"] is True and second["json_path"] == first["json_path"]
    with open(second["markdown_path"]) as f:
        text = f.read()
    assert "- cancel pid 19885 (changed)" in text and ": healthy." in text


def test_bad_hang_info_is_refused(tmp_path):
    result = run_task("gp_report", {"hang_info": {"verdict": "hung"}, "dest": str(tmp_path)})
    assert result["failed"] is True and "hang_info must be a registered gp_hang_info result" in result["msg"]
