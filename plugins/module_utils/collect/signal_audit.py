# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who sent which signal to which PostgreSQL process: Linux audit records parsed.

The role ``gp_signal_audit`` loads audit rules (key ``gpops_signals`` by
default) on the signal-sending system calls, filtered on the signal number
(``kill``/``tkill``/``rt_sigqueueinfo``/``pidfd_send_signal`` carry it in
``a1``, ``tgkill``/``rt_tgsigqueueinfo`` in ``a2``). For every matching call
the kernel writes one event (records sharing ``msg=audit(TIME:SERIAL)``):
``SYSCALL`` (the sender: pid, ppid, uid, auid, comm, exe, arguments in hex),
one ``OBJ_PID`` per process signalled (the target: opid, ouid, ocomm) and
``PROCTITLE`` (the sender's command line, hex, NUL-separated). auditd's
``log_format = ENRICHED`` appends resolved names (``UID="root"``) after a
``0x1d`` separator. The kernel cannot filter on the target, so the targets
are filtered here: PostgreSQL and Greenplum processes all have ``comm``
``postgres`` (the process title changes ``argv``, not ``comm``).

Sources: linux ``kernel/auditsc.c`` (``audit_signal_info``, OBJ_PID records),
audit userspace ``auparse`` field encodings, auditctl(8), ausearch(8).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
from typing import Dict, Iterable, List, Optional

# Linux x86_64 and aarch64 share these numbers (signal(7)).
SIGNALS = {"SIGUSR1": 10, "SIGUSR2": 12, "SIGTERM": 15, "SIGQUIT": 3, "SIGKILL": 9,
           "SIGINT": 2, "SIGHUP": 1, "SIGSTOP": 19, "SIGCONT": 18, "SIGABRT": 6, "SIGSEGV": 11}
SIGNAL_NAMES = {number: name for name, number in SIGNALS.items()}
# x86_64 system call numbers; ENRICHED logs also name them (SYSCALL=kill).
SYSCALLS = {62: "kill", 200: "tkill", 234: "tgkill", 129: "rt_sigqueueinfo", 297: "rt_tgsigqueueinfo",
            424: "pidfd_send_signal"}
SIGNAL_IN_A2 = ("tgkill", "rt_tgsigqueueinfo")
POSTGRES_COMMS = ("postgres", "postmaster")
DEFAULT_KEY = "gpops_signals"

_HEADER = re.compile(r"^type=(?P<type>\S+) msg=audit\((?P<time>\d+\.\d+):(?P<serial>\d+)\):\s*(?P<body>.*)$")
_FIELD = re.compile(r'(\w+)=("[^"]*"|\S+)')
_HEX = re.compile(r"^[0-9A-F]+$")


def parse_fields(body):
    """Fields of one record body; ENRICHED names (after ``\\x1d``) are merged in upper case."""
    raw, _sep, enriched = body.partition("\x1d")
    fields = {}
    for part, upper in ((raw, False), (enriched, True)):
        for name, value in _FIELD.findall(part):
            if upper and not name.isupper():
                continue
            fields[name] = value
    return fields


def untrusted(value):
    """Decode an audit string field: quoted text, or hex when it held special characters."""
    if value is None or value == "(null)":
        return None
    if value.startswith('"') and value.endswith('"'):
        return value[1:-1]
    if _HEX.match(value) and len(value) % 2 == 0:
        return bytes.fromhex(value).decode("utf-8", "replace")
    return value


def proctitle(value):
    """The sender's command line from PROCTITLE (hex of NUL-separated argv, or quoted text)."""
    if value is None:
        return None
    if value.startswith('"'):
        return value.strip('"')
    if _HEX.match(value) and len(value) % 2 == 0:
        return " ".join(p.decode("utf-8", "replace") for p in bytes.fromhex(value).split(b"\0") if p)
    return value


def _signed(hex_value):
    value = int(hex_value, 16)
    return value - (1 << 64) if value >= 1 << 63 else value


def group_events(lines):
    # type: (Iterable[str]) -> List[Dict]
    """Group audit log lines into events: ``{time, serial, records: [(type, fields)]}``, in order."""
    events = {}
    for line in lines:
        match = _HEADER.match(line.rstrip("\n"))
        if not match:
            continue
        ident = (match.group("time"), match.group("serial"))
        event = events.setdefault(ident, {"time": float(match.group("time")), "serial": int(match.group("serial")),
                                          "records": []})
        event["records"].append((match.group("type"), parse_fields(match.group("body"))))
    return list(events.values())


def _user(fields, name):
    value = fields.get(name)
    number = int(value) if value is not None and value.lstrip("-").isdigit() else None
    if number in (4294967295, -1):
        number = None  # "unset" (no login uid)
    return {"uid": number, "name": untrusted(fields.get(name.upper()))}


def signal_event(event, key=DEFAULT_KEY):
    """The signal sent in one event, or None if the event is not one of ours.

    Returns ``{time (ISO, UTC), epoch, serial, syscall, signal, signo, success,
    sender: {pid, ppid, comm, exe, cmdline, uid, auid, ...}, target_pid, targets:
    [{pid, uid, comm}]}``. ``target_pid`` is the syscall's first argument (negative:
    a process group; for ``pidfd_send_signal`` a descriptor, so None).
    """
    syscall = next((f for t, f in event["records"] if t == "SYSCALL"), None)
    if syscall is None or untrusted(syscall.get("key")) != key:
        return None
    name = syscall.get("SYSCALL") or SYSCALLS.get(int(syscall.get("syscall", -1)))
    if name not in SYSCALLS.values():
        return None
    signo = int(syscall["a2" if name in SIGNAL_IN_A2 else "a1"], 16)
    title = next((f.get("proctitle") for t, f in event["records"] if t == "PROCTITLE"), None)
    targets = [{"pid": int(f["opid"]), "uid": _user(f, "ouid")["uid"], "user": untrusted(f.get("OUID")),
                "comm": untrusted(f.get("ocomm"))} for t, f in event["records"] if t == "OBJ_PID"]
    uid, auid = _user(syscall, "uid"), _user(syscall, "auid")
    return {
        "time": datetime.datetime.fromtimestamp(event["time"], datetime.timezone.utc).isoformat(),
        "epoch": event["time"], "serial": event["serial"], "syscall": name,
        "signo": signo, "signal": SIGNAL_NAMES.get(signo, str(signo)),
        "success": syscall.get("success") == "yes",
        "sender": {"pid": int(syscall["pid"]), "ppid": int(syscall["ppid"]), "comm": untrusted(syscall.get("comm")),
                   "exe": untrusted(syscall.get("exe")), "cmdline": proctitle(title),
                   "uid": uid["uid"], "user": uid["name"], "auid": auid["uid"], "login_user": auid["name"]},
        "target_pid": None if name == "pidfd_send_signal" else _signed(syscall["a0"]),
        "targets": targets,
    }


def senders(lines, key=DEFAULT_KEY, target_comms=POSTGRES_COMMS, since=None):
    # type: (Iterable[str], str, Optional[Iterable[str]], Optional[float]) -> List[Dict]
    """Signals recorded under ``key`` whose target is one of ``target_comms`` (None: any
    target), at or after ``since`` (epoch seconds), oldest first."""
    comms = set(target_comms) if target_comms else None
    found = []
    for event in group_events(lines):
        record = signal_event(event, key)
        if record is None or (since is not None and record["epoch"] < since):
            continue
        if comms is not None and not any(t["comm"] in comms for t in record["targets"]):
            continue
        found.append(record)
    return sorted(found, key=lambda r: (r["epoch"], r["serial"]))


def summary(records):
    """Counts per (sender exe, user, signal), most frequent first, for a quick read."""
    counts = {}
    for r in records:
        ident = (r["sender"]["exe"], r["sender"]["user"] or r["sender"]["uid"], r["signal"])
        counts[ident] = counts.get(ident, 0) + 1
    return [{"exe": exe, "user": user, "signal": sig, "count": n}
            for (exe, user, sig), n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def parse_status(text):
    # type: (str) -> Dict[str, Optional[int]]
    """``auditctl -s`` output as ``{enabled, pid, lost, backlog, ...}`` (ints; None when not a number).

    ``enabled``: 0 auditing off (the kernel records nothing), 1 on, 2 on and locked;
    ``pid``: the audit daemon's PID, 0 when none runs (records then go to the kernel
    log at best, never to ``audit.log``).
    """
    status = {}
    for line in (text or "").splitlines():
        name, _sep, value = line.strip().partition(" ")
        if name:
            value = value.strip().split()[0] if value.strip() else ""
            status[name] = int(value) if value.lstrip("-").isdigit() else None
    return status


def recording_problems(status, rules_loaded, key=DEFAULT_KEY):
    # type: (Optional[Dict[str, Optional[int]]], Optional[int], str) -> List[str]
    """Why the audit could not have recorded signals now; pure. Empty when it can.

    ``status``: :func:`parse_status` of ``auditctl -s`` (None: could not be read);
    ``rules_loaded``: rules with ``key`` in ``auditctl -l -k key`` (None: unknown).
    Unknown facts are not problems here; the caller reports them as unknown.
    """
    problems = []
    if status is not None:
        if status.get("enabled") == 0:
            problems.append("auditing is disabled in the kernel (auditctl -s: enabled 0): nothing is recorded")
        if status.get("pid") == 0:
            problems.append("auditd is not running (auditctl -s: pid 0): no record reaches the audit log")
    if rules_loaded == 0:
        problems.append("no audit rule with key %r is loaded (auditctl -l -k %s): no signal is recorded under it"
                        % (key, key))
    return problems
