"""Audit log parsing for gp_signal_audit (module_utils/signal_audit.py), on records in the
format auditd writes (RAW and ENRICHED), including ones captured on this project's machine."""
import os

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import signal_audit

GS = "\x1d"  # auditd's ENRICHED separator
LOG = [
    # A rule being added: same key, not a signal.
    'type=CONFIG_CHANGE msg=audit(1795244314.100:4): auid=4294967295 ses=4294967295 op=add_rule '
    'key="gpops_signals" list=4 res=1' + GS + 'AUID="unset"',
    'type=SYSCALL msg=audit(1795244314.100:4): arch=c000003e syscall=44 success=yes exit=1080 a0=5 a1=7ff a2=438 '
    'a3=0 items=0 ppid=1 pid=99 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 '
    'tty=(none) ses=4294967295 comm="auditctl" exe="/usr/sbin/auditctl" key=(null)',
    # gpadmin's script sends SIGUSR2 to a segment backend (ENRICHED).
    'type=SYSCALL msg=audit(1795244400.250:17): arch=c000003e syscall=62 success=yes exit=0 a0=1f90 a1=c a2=0 '
    'a3=7f items=0 ppid=4000 pid=4001 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 '
    'sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="kill" exe="/usr/bin/kill" key="gpops_signals"' + GS +
    'ARCH=x86_64 SYSCALL=kill AUID="gpadmin" UID="gpadmin" GID="gpadmin" EUID="gpadmin"',
    'type=OBJ_PID msg=audit(1795244400.250:17): opid=8080 oauid=-1 ouid=1000 oses=-1 ocomm="postgres"' + GS +
    'OAUID="unset" OUID="gpadmin"',
    'type=PROCTITLE msg=audit(1795244400.250:17): proctitle=2F7573722F62696E2F6B696C6C002D55535232003830383000',
    # tgkill of SIGTERM (signal in a2), RAW format, sender comm hex-encoded (it has a space).
    'type=SYSCALL msg=audit(1795244401.000:18): arch=c000003e syscall=234 success=yes exit=0 a0=1f91 a1=1f91 '
    'a2=f a3=0 items=0 ppid=1 pid=555 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 '
    'tty=(none) ses=4294967295 comm=6D7920746F6F6C exe="/opt/tool/bin/tool" key="gpops_signals"',
    'type=OBJ_PID msg=audit(1795244401.000:18): opid=8081 oauid=-1 ouid=1000 oses=-1 ocomm="postgres"',
    'type=PROCTITLE msg=audit(1795244401.000:18): proctitle="tool"',
    # SIGKILL to a process group (a0 negative): two targets, one of them postgres.
    'type=SYSCALL msg=audit(1795244402.000:19): arch=c000003e syscall=62 success=yes exit=0 '
    'a0=ffffffffffffe0c0 a1=9 a2=0 a3=0 items=0 ppid=1 pid=556 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 '
    'egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="bash" exe="/usr/bin/bash" key="gpops_signals"',
    'type=OBJ_PID msg=audit(1795244402.000:19): opid=8000 oauid=-1 ouid=1000 oses=-1 ocomm="sleep"',
    'type=OBJ_PID msg=audit(1795244402.000:19): opid=8001 oauid=-1 ouid=1000 oses=-1 ocomm="postgres"',
    # SIGUSR1 to a non-PostgreSQL process: not reported by default.
    'type=SYSCALL msg=audit(1795244403.000:20): arch=c000003e syscall=62 success=yes exit=0 a0=2000 a1=a a2=0 '
    'a3=0 items=0 ppid=1 pid=557 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) '
    'ses=1 comm="bash" exe="/usr/bin/bash" key="gpops_signals"',
    'type=OBJ_PID msg=audit(1795244403.000:20): opid=8192 oauid=-1 ouid=0 oses=-1 ocomm="nginx"',
    # Another key: someone else's rule.
    'type=SYSCALL msg=audit(1795244404.000:21): arch=c000003e syscall=62 success=yes exit=0 a0=2000 a1=c a2=0 '
    'a3=0 items=0 ppid=1 pid=558 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) '
    'ses=1 comm="bash" exe="/usr/bin/bash" key="other"',
    'type=OBJ_PID msg=audit(1795244404.000:21): opid=8193 oauid=-1 ouid=0 oses=-1 ocomm="postgres"',
    "not an audit line",
]


def test_senders_to_postgres_with_sender_and_target():
    found = signal_audit.senders(LOG)
    assert [(r["serial"], r["signal"], r["syscall"]) for r in found] == [
        (17, "SIGUSR2", "kill"), (18, "SIGTERM", "tgkill"), (19, "SIGKILL", "kill")]
    usr2 = found[0]
    assert usr2["sender"] == {"pid": 4001, "ppid": 4000, "comm": "kill", "exe": "/usr/bin/kill",
                              "cmdline": "/usr/bin/kill -USR2 8080", "uid": 1000, "user": "gpadmin",
                              "auid": 1000, "login_user": "gpadmin"}
    assert usr2["target_pid"] == 8080
    assert usr2["targets"] == [{"pid": 8080, "uid": 1000, "user": "gpadmin", "comm": "postgres"}]
    assert usr2["time"].startswith("2026-11-21T") and usr2["success"] is True


def test_raw_format_hex_comm_and_unset_auid():
    tool = signal_audit.senders(LOG)[1]
    assert tool["sender"]["comm"] == "my tool" and tool["sender"]["cmdline"] == "tool"
    assert tool["sender"]["auid"] is None and tool["sender"]["user"] is None
    assert tool["target_pid"] == 0x1f91 and tool["signo"] == 15


def test_process_group_kill():
    group = signal_audit.senders(LOG)[2]
    assert group["target_pid"] == -8000
    assert [t["comm"] for t in group["targets"]] == ["sleep", "postgres"]


def test_filters_key_target_and_time():
    assert [r["serial"] for r in signal_audit.senders(LOG, target_comms=None)] == [17, 18, 19, 20]
    assert [r["serial"] for r in signal_audit.senders(LOG, key="other")] == [21]
    assert [r["serial"] for r in signal_audit.senders(LOG, since=1795244401.0)] == [18, 19]


def test_summary_counts_per_sender():
    rows = signal_audit.summary(signal_audit.senders(LOG) + signal_audit.senders(LOG)[:1])
    assert rows[0] == {"exe": "/usr/bin/kill", "user": "gpadmin", "signal": "SIGUSR2", "count": 2}


def test_rules_file_of_the_role_matches_the_parser():
    """The role's rule template uses the syscall groups and signal numbers the parser reads."""
    template = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "gp_signal_audit", "templates",
                            "gpops-signals.rules.j2")
    text = open(template).read()
    assert "-S kill -S tkill -S rt_sigqueueinfo -S pidfd_send_signal" in text and "-F a1=" in text
    assert "-S tgkill -S rt_tgsigqueueinfo" in text and "-F a2=" in text
    assert set(signal_audit.SIGNAL_IN_A2) == {"tgkill", "rt_tgsigqueueinfo"}


def test_role_signal_numbers_match_the_parser():
    import yaml
    role_vars = os.path.join(os.path.dirname(__file__), "..", "..", "roles", "gp_signal_audit", "vars", "main.yml")
    with open(role_vars) as handle:
        numbers = yaml.safe_load(handle)["gp_signal_audit_numbers"]
    assert numbers == signal_audit.SIGNALS


def test_audit_status_and_why_it_cannot_record():
    status = signal_audit.parse_status("enabled 0\nfailure 1\npid 0\nrate_limit 0\nloginuid_immutable 0 unlocked\n")
    assert status["enabled"] == 0 and status["pid"] == 0 and status["loginuid_immutable"] == 0
    problems = signal_audit.recording_problems(status, 0, "k")
    assert [p.split(" (")[0] for p in problems] == [
        "auditing is disabled in the kernel", "auditd is not running", "no audit rule with key 'k' is loaded"]
    assert signal_audit.recording_problems({"enabled": 1, "pid": 812}, 10) == []
    assert signal_audit.recording_problems(None, None) == []  # unknown is not a problem: the module says unknown
