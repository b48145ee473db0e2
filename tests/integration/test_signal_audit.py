"""Role gp_signal_audit and module gp_signal_audit_info.

Live where the kernel lets this machine audit (auditctl -s works; most containers do
not, and then the live test is skipped with that reason): the role loads the rules, a
signal sent to a PostgreSQL backend is reported with its sender, a second run changes
nothing, state absent removes the rules. Everywhere: the rule text the role writes, and
the report parsed from audit records the test writes.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time

import jinja2
import pytest

from stale_fixtures import OS_USER, ROOT, pg_factory, pg_server, run_module, run_role, wait_for  # noqa: F401

pytestmark = pytest.mark.integration

ROLE = os.path.join(ROOT, "roles", "gp_signal_audit")
KEY = "gpops_signals_test"


def _render(**overrides):
    import yaml
    values = {}
    for part in ("defaults", "vars"):
        with open(os.path.join(ROLE, part, "main.yml")) as handle:
            values.update(yaml.safe_load(handle))
    values.update(overrides, ansible_managed="managed")
    with open(os.path.join(ROLE, "templates", "gpops-signals.rules.j2")) as handle:
        return jinja2.Template(handle.read(), trim_blocks=True, keep_trailing_newline=True).render(values)


def test_rule_text():
    rules = [line for line in _render().splitlines() if not line.startswith("#")]
    assert rules[:2] == [
        "-a always,exit -F arch=b64 -S kill -S tkill -S rt_sigqueueinfo -S pidfd_send_signal -F a1=10 "
        "-k gpops_signals",
        "-a always,exit -F arch=b64 -S tgkill -S rt_tgsigqueueinfo -F a2=10 -k gpops_signals"]
    numbers = sorted({int(re.search(r"-F a[12]=(\d+)", line).group(1)) for line in rules})
    assert numbers == [3, 9, 10, 12, 15]  # SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2, SIGTERM
    assert len(rules) == 10
    excluded = _render(gp_signal_audit_exclude_exe="/usr/local/gpdb/bin/postgres",
                       gp_signal_audit_signals=["SIGUSR2"])
    assert [line for line in excluded.splitlines() if not line.startswith("#")] == [
        "-a always,exit -F arch=b64 -S kill -S tkill -S rt_sigqueueinfo -S pidfd_send_signal -F a1=12 "
        "-F exe!=/usr/local/gpdb/bin/postgres -k gpops_signals",
        "-a always,exit -F arch=b64 -S tgkill -S rt_tgsigqueueinfo -F a2=12 "
        "-F exe!=/usr/local/gpdb/bin/postgres -k gpops_signals"]


def test_report_from_written_audit_records(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text(
        'type=SYSCALL msg=audit(1795244400.250:17): arch=c000003e syscall=62 success=yes exit=0 a0=1f90 a1=c '
        'a2=0 a3=7f items=0 ppid=4000 pid=4001 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 '
        'egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="kill" exe="/usr/bin/kill" key="%s"\n'
        'type=OBJ_PID msg=audit(1795244400.250:17): opid=8080 oauid=-1 ouid=1000 oses=-1 ocomm="postgres"\n'
        'type=PROCTITLE msg=audit(1795244400.250:17): proctitle=2F7573722F62696E2F6B696C6C002D555352320038303830\n'
        % KEY)
    result = run_module("gp_signal_audit_info", {"key": KEY, "log_paths": [str(log)], "require_recording": False})
    assert result["recording"] in (True, False, None) and "problems" in result["audit"]
    [sent] = result["signals"]
    assert (sent["signal"], sent["target_pid"], sent["sender"]["cmdline"]) == ("SIGUSR2", 8080,
                                                                               "/usr/bin/kill -USR2 8080")
    assert result["summary"] == [{"exe": "/usr/bin/kill", "user": 1000, "signal": "SIGUSR2", "count": 1}]
    later = run_module("gp_signal_audit_info", {"key": KEY, "log_paths": [str(log)], "require_recording": False,
                                                "since": "2026-11-21T07:40:01"})
    assert later["signals"] == []
    bad = run_module("gp_signal_audit_info", {"log_paths": [str(tmp_path / "none.log")]})
    assert bad["failed"] and "log_paths" in bad["msg"]
    bad = run_module("gp_signal_audit_info", {"log_paths": [str(log)], "since": "yesterday"})
    assert bad["failed"] and "since" in bad["msg"]


def _audit_status():
    if os.getuid() != 0 or not shutil.which("auditctl"):
        return None, "needs root and auditctl (Debian package auditd)"
    res = subprocess.run(["auditctl", "-s"], capture_output=True, text=True)
    if res.returncode != 0:
        return None, "the kernel does not let this machine audit: %s" % (res.stderr or res.stdout).strip()
    return dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line), None


def _stop_auditd():
    pid = int(_audit_status()[0].get("pid") or 0)
    if pid:
        os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: _audit_status()[0].get("pid", "0") == "0", timeout=20), "auditd did not stop"


@pytest.fixture
def audit_off():
    """This machine's audit made useless, as in the incident: auditd stopped and auditing disabled
    (auditctl -e 0). Put back as it was after the test, whatever happens."""
    status, reason = _audit_status()
    if status is None:
        pytest.skip(reason)
    enabled, running = status.get("enabled"), status.get("pid", "0") != "0"
    if enabled == "2":
        pytest.skip("the audit configuration of this machine is locked (enabled 2)")
    _stop_auditd()
    subprocess.run(["auditctl", "-e", "0"], check=True, capture_output=True)
    yield
    _stop_auditd()
    subprocess.run(["auditctl", "-e", enabled], capture_output=True)
    if running:
        subprocess.run(["service", "auditd", "start"], capture_output=True, timeout=60)


def test_report_fails_when_the_audit_cannot_record(audit_off, tmp_path):
    """With auditing disabled and no auditd, an empty report would read "nobody sent a signal"."""
    log = tmp_path / "audit.log"
    log.write_text("")
    result = run_module("gp_signal_audit_info", {"key": KEY, "log_paths": [str(log)]})
    assert result["failed"] and result["msg"].startswith("require_recording:")
    assert "enabled 0" in result["msg"] and "auditd is not running" in result["msg"]
    assert "no audit rule with key" in result["msg"]
    warned = run_module("gp_signal_audit_info", {"key": KEY, "log_paths": [str(log)], "require_recording": False})
    assert not warned.get("failed") and warned["signals"] == [] and warned["recording"] is False
    assert len(warned["audit"]["problems"]) == 3
    assert "cannot record signals" in json.dumps(warned["warnings"])


def test_role_makes_auditing_effective_and_a_signal_to_a_backend_is_reported(audit_off, pg_server, tmp_path):
    """Auditing disabled and auditd stopped: the role (state present) starts auditd, enables auditing and
    loads the rules; a kill -USR2 to a backend is then reported with its sender."""
    rules_file = str(tmp_path / "gpops-signals.rules")
    role_vars = {"gp_signal_audit_key": KEY, "gp_signal_audit_rules_file": rules_file,
                 "gp_signal_audit_install_package": False, "gp_signal_audit_signals": ["SIGUSR2", "SIGTERM"]}
    try:
        recap, out, _ = run_role("gp_signal_audit", role_vars)
        assert recap.get("failed") == 0 and recap.get("changed", 0) >= 2, out
        status = _audit_status()[0]
        assert status["enabled"] in ("1", "2") and status["pid"] != "0", status
        loaded = subprocess.run(["auditctl", "-l", "-k", KEY], capture_output=True, text=True).stdout
        assert len([line for line in loaded.splitlines() if KEY in line]) == 4
        written = [line for line in open(rules_file).read().splitlines() if not line.startswith("#")]
        assert written == [line for line in _render(**role_vars).splitlines() if not line.startswith("#")]
        recap, out, _ = run_role("gp_signal_audit", role_vars)
        assert recap.get("changed") == 0, out

        since = time.time() - 1
        backend = int(pg_server.psql("select pid from pg_stat_activity where backend_type = 'autovacuum launcher'"))
        # A backend ignores SIGUSR2 harmlessly; the sender is what the audit must show.
        subprocess.run(["runuser", "-u", OS_USER, "--", "/usr/bin/kill", "-USR2", str(backend)], check=True)

        def reported():
            recap, out, saved = run_role("gp_signal_audit", dict(role_vars, gp_signal_audit_report=True,
                                                                 gp_signal_audit_since=str(since)),
                                         save="gp_signal_audit_result")
            return [s for s in (saved or {}).get("signals", []) if s["target_pid"] == backend]
        found = wait_for(reported, timeout=30, interval=1)
        assert found, "the signal was not reported"
        sent = found[0]
        assert sent["signal"] == "SIGUSR2" and sent["syscall"] == "kill"
        assert sent["sender"]["exe"] == "/usr/bin/kill" and sent["sender"]["user"] == OS_USER
        assert sent["sender"]["cmdline"] == "/usr/bin/kill -USR2 %d" % backend
        assert sent["targets"][0]["comm"] == "postgres"
    finally:
        recap, out, _ = run_role("gp_signal_audit", dict(role_vars, gp_signal_audit_state="absent"))
    assert recap.get("failed") == 0, out
    assert not os.path.exists(rules_file)
    loaded = subprocess.run(["auditctl", "-l", "-k", KEY], capture_output=True, text=True).stdout
    assert KEY not in loaded
    recap, out, _ = run_role("gp_signal_audit", dict(role_vars, gp_signal_audit_state="absent"))
    assert recap.get("changed") == 0, out
