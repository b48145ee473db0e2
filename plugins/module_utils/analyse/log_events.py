# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Greenplum's own logs as an incident timeline: classified events, linked into chains.

Pure functions over CSV log text (``gp_log_info`` reads the files or the rows of
``gp_toolkit.gp_log_system``; ``report`` renders the result):

- ``RULES``: the event classes, in match order: ``Rule(name, severity, pattern,
  sources, what)``; ``sources`` are the Greenplum 7 source files that emit the message
  (``docs/log-timeline.md`` links them).
- ``parse_time(text) -> epoch or None``: a CSV log time (``2026-12-05 09:04:00.507 UTC``).
- ``LogScan(since, until, max_lines, deadline, max_events)``: the bounded scan. Feed it
  CSV text with ``scan_file(path, node)`` / ``scan_lines(lines, node)``, or already parsed
  rows (``gp_log_system``) with ``add_row(fields, node)``; ``stats()`` says how many lines
  were read, matched, skipped as malformed (with up to 5 examples), and whether a bound
  stopped the scan. ``events()``: the classified events, oldest first.
- ``history_record(time, dbid, description)``: a ``gp_configuration_history`` row as a record.
- ``classify(fields, node) -> event dict or None``: one CSV record (30 fields) as an event.
- ``chains(events, signals=None, link_seconds=...) -> list``: events linked by session,
  distributed transaction id (gxid) and time; each chain names what started it. Signals
  (``gp_signal_audit_info`` results) sent to a process of a chain join it.
- ``merge(events, others)``: events of several scans as one list, duplicates once.
- ``summary(events) -> {class: {severity: count}}``; ``timeline_lines(...)``.

An event: ``time`` (ISO 8601 UTC), ``epoch``, ``class``, ``severity`` (critical, high,
medium, low, info), ``node`` {content, dbid, host, role, datadir}, ``pid``, ``session``
{id, command} (``gp_session_id``, ``gp_command_count``), ``gxid``, ``log_severity``,
``message``, ``detail``, ``context`` (tags: critical_section, two_phase_commit,
recovery), ``summary``, ``sources`` (Greenplum source files of the class), ``emitted_at``
(``file.c:line`` from the log record itself), ``raw`` (the CSV record, as evidence).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import collections
import csv
import datetime
import glob
import os
import re
import time

FIELDS = ("logtime", "loguser", "logdatabase", "logpid", "logthread", "loghost", "logport",
          "logsessiontime", "logtransaction", "logsession", "logcmdcount", "logsegment",
          "logslice", "logdistxact", "loglocalxact", "logsubxact", "logseverity", "logstate",
          "logmessage", "logdetail", "loghint", "logquery", "logquerypos", "logcontext",
          "logdebug", "logcursorpos", "logfunction", "logfile", "logline", "logstack")
MIN_FIELDS = 29          # Greenplum 6 and 7 write 30; the last (stack) may be missing
SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(reversed(SEVERITIES))}   # info 0 .. critical 4
MAX_RECORD_CHARS = 1 << 20   # a record longer than this is cut: counted as malformed
RAW_CHARS = 2000             # evidence kept per event
SOURCE_URL = "https://github.com/greenplum-db/gpdb-archive/blob/main/"


class Rule(object):
    __slots__ = ("name", "severity", "regex", "sources", "what", "log_severities")

    def __init__(self, name, severity, pattern, sources, what, log_severities=None):
        self.name, self.severity, self.sources, self.what = name, severity, sources, what
        self.regex = re.compile(pattern) if pattern else None
        self.log_severities = log_severities


_POSTGRES_C = "src/backend/tcop/postgres.c"
_CDBTM = "src/backend/cdb/cdbtm.c"
_POSTMASTER = "src/backend/postmaster/postmaster.c"
_XLOG = "src/backend/access/transam/xlog.c"

# First match wins: specific messages before the severity catch-alls.
RULES = (
    Rule("gdd_victim", "high", r"cancelled by global deadlock detector",
         ["src/backend/utils/gdd/gddbackend.c", _POSTGRES_C],
         "a statement cancelled by the global deadlock detector (GDD) to break a global deadlock"),
    Rule("gdd_cycle", "high",
         r"global deadlock detected! Final graph is|these gxids will be cancelled to break global deadlock",
         ["src/backend/utils/gdd/gddbackend.c"],
         "the global deadlock detector found a cycle (its wait graph dump) and the gxids it cancels"),
    Rule("local_deadlock", "high", r"^deadlock detected",
         ["src/backend/storage/lmgr/deadlock.c", "src/backend/storage/lmgr/proc.c"],
         "a deadlock on one node, broken by PostgreSQL's own detector (the waiter that found it errors out)"),
    Rule("lock_timeout", "medium", r"canceling statement due to lock timeout", [_POSTGRES_C],
         "a statement gave up waiting for a lock after lock_timeout"),
    Rule("statement_timeout", "medium", r"canceling statement due to statement timeout", [_POSTGRES_C],
         "a statement cancelled after statement_timeout"),
    Rule("resgroup_limit", "medium",
         r"resource group|exceeded the (memory|concurrency) limit|resource queue|memory quota",
         ["src/backend/utils/resgroup/resgroup.c", "src/backend/utils/resource_manager/memquota.c",
          "src/backend/utils/resscheduler/resqueue.c"],
         "a resource group or resource queue limit refused, cancelled or timed out a statement"),
    Rule("out_of_memory", "high",
         r"[Oo]ut of memory|high VMEM usage|[Vv]mem limit reached|VM protect failed",
         ["src/backend/utils/mmgr/memprot.c", "src/backend/utils/mmgr/runaway_cleaner.c",
          "src/backend/utils/mmgr/mcxt.c", "src/backend/utils/mmgr/vmem_tracker.c"],
         "out of memory: the OS refused memory, the VMEM limit (gp_vmem_protect_limit) was reached, "
         "or the runaway cleaner cancelled the top memory consumer"),
    Rule("syncrep_cancel_ignored", "medium",
         r"ignoring query cancel request for synchronous replication|canceling the wait for synchronous replication",
         ["src/backend/replication/syncrep.c"],
         "a commit waiting for its mirror in SyncRep: cancel ignored, or terminated while waiting"),
    Rule("statement_cancelled", "medium", r"canceling statement due to user request", [_POSTGRES_C],
         "a statement cancelled on request (pg_cancel_backend, a client's cancel, or Ctrl-C)"),
    Rule("session_terminated", "medium",
         r"terminating connection due to administrator command|terminating connection due to idle"
         r"|terminating (autovacuum|background worker) process due to administrator command",
         [_POSTGRES_C],
         "a session terminated (pg_terminate_backend, or a fast/immediate shutdown)"),
    Rule("fts_promotion", "critical", r"promoting mirror to primary due to FTS request",
         ["src/backend/fts/ftsmessagehandler.c", "src/backend/fts/ftsprobe.c"],
         "FTS promoted a mirror: its primary was found down"),
    Rule("fts_config_change", "high",
         r"FTS: update role, status, and mode for dbid \d+ with contentid -?\d+ to",
         ["src/backend/fts/fts.c"],
         "FTS changed a node's role, status or mode in gp_segment_configuration (marked down, "
         "not in sync, back in sync); recorded in gp_configuration_history, not in the log"),
    Rule("syncrep_off", "high",
         r"turning off synchronous wal replication due to FTS request"
         r"|setting synchronous_standby_names to ''",
         ["src/backend/fts/ftsmessagehandler.c", "src/backend/replication/gp_replication.c"],
         "a primary stopped waiting for its mirror (synchronous replication off) at FTS's request"),
    Rule("syncrep_on", "info", r"setting synchronous_standby_names to '\*'",
         ["src/backend/replication/gp_replication.c"],
         "a primary waits for its mirror again (synchronous replication back on)"),
    Rule("fts_probe_failure", "medium",
         r"FTS: cannot establish libpq connection|FTS: detected segment is in (recovery mode|RESET state)"
         r"|FTS: ftsConnect .* failed|FTS: .* timed out|disk IO check during FTS probe failed"
         r"|FTS double fault detected|FTS failed to turn off syncrep|FTS max \(\d+\) retries exhausted"
         r"|FTS: (failed to read from|error getting results from|error response from|invalid response from)",
         ["src/backend/fts/ftsprobe.c", "src/backend/fts/ftsmessagehandler.c"],
         "an FTS probe of a segment failed or found it resetting or recovering"),
    Rule("fault_injected", "info", r"fault triggered, fault name:",
         ["src/backend/utils/misc/faultinjector.c"],
         "a fault injected with gp_inject_fault was triggered (tests and support only)"),
    Rule("dtx_failure", "high",
         r"unable to complete '(Abort|Commit Prepared)' broadcast|[Uu]nable to complete the 'Abort Prepared' broadcast"
         r"|'(Prepare|Abort|Commit Prepared)' broadcast failed|distributed transaction broadcast failed"
         r"|marking retry needed for distributed transaction|Retry (Distributed )?Commit Prepared|Retry Abort Prepared"
         r"|Unexpected segment distribute transaction context|Expected segment distributed transaction context"
         r"|Unexpected Dtx state|DTM error|writer gang of current global transaction is lost"
         r"|distributed transaction .* (not found|failed)|could not find the prepared transaction|prepared transaction with identifier",
         [_CDBTM, "src/backend/cdb/cdbtmutils.c", "src/backend/cdb/cdbdtxrecovery.c",
          "src/backend/access/transam/twophase.c"],
         "a distributed (two-phase) transaction could not complete its Prepare, Commit Prepared or "
         "Abort broadcast, or a segment found an unexpected distributed transaction context"),
    Rule("dispatcher_error", "medium",
         r"Dispatcher encountered connection error|Dispatcher noticed bad connection|Error on receive from"
         r"|failed to acquire resources on one or more segments|Command could not be dispatch"
         r"|DispatchResult from .*(connect )?error|gang was disconnected|gang was lost|Lost connection to one or more segments"
         r"|could not connect to segment|connection to segment .* (lost|closed)|Interconnect error",
         ["src/backend/cdb/dispatcher/cdbdisp_async.c", "src/backend/cdb/dispatcher/cdbgang_async.c",
          "src/backend/cdb/dispatcher/cdbgang.c", "src/backend/cdb/dispatcher/cdbdispatchresult.c"],
         "the coordinator's dispatcher lost or could not reach a segment's QE"),
    Rule("crash", "critical",
         r"was terminated by signal|terminating any other active server processes"
         r"|was terminated by exception|exited with exit code [1-9]",
         [_POSTMASTER],
         "a server process crashed (killed by a signal, or PANIC): the postmaster resets every session"),
    Rule("crash_reset", "high",
         r"all server processes terminated; reinitializing|terminating connection because of crash of another server process",
         [_POSTMASTER, _POSTGRES_C],
         "the postmaster's reset after a crash: every session of the node is ended"),
    Rule("crash_recovery", "medium",
         r"database system was interrupted|database system was not properly shut down; automatic recovery in progress"
         r"|^redo starts at|^redo done at|database system was shut down in recovery",
         [_XLOG],
         "crash recovery: the node replays WAL after a crash or an immediate stop"),
    Rule("restart_done", "info",
         r"^database system is ready to accept connections|^database system is ready$",
         [_POSTMASTER, _XLOG],
         "the node accepts connections again (end of a start, restart or recovery)"),
    Rule("shutdown", "info",
         r"^received (fast|smart|immediate) shutdown request|^database system is shut down",
         [_POSTMASTER, _XLOG],
         "a node was stopped"),
    Rule("lockfile_exists", "high", r"lock file \".*\" already exists|could not create lock file",
         ["src/backend/utils/init/miscinit.c"],
         "a postmaster refused to start: postmaster.pid or a socket lock file of another (or a dead) "
         "postmaster is there"),
    Rule("slony_nodelock", "high",
         r"duplicate key value violates unique constraint \"sl_nodelock-pkey\"",
         ["src/backend/access/nbtree/nbtinsert.c"],
         "Slony could not register its node lock: a stale sl_nodelock row of a dead slon process"),
    Rule("panic", "critical", None, ["src/backend/utils/error/elog.c"],
         "a PANIC: the node crashes and restarts (every session of the node ends)",
         log_severities=("PANIC",)),
    Rule("fatal", "medium", None, ["src/backend/utils/error/elog.c"],
         "a FATAL error: one session (or auxiliary process) ended", log_severities=("FATAL",)),
)
RULES_BY_NAME = {r.name: r for r in RULES}
CLASSES = tuple(r.name for r in RULES)

# One search over the raw record decides whether it is worth parsing: every message
# rule's pattern (anchors dropped) plus a PANIC or FATAL severity field.
# Also the server-side filter of gp_log_system (a POSIX regular expression: the same text).
MESSAGE_PATTERN = "|".join("(%s)" % r.regex.pattern.lstrip("^").rstrip("$") for r in RULES if r.regex)
_ANY = re.compile(MESSAGE_PATTERN + r'|,"(?:PANIC|FATAL)",')


def _needles():
    """A literal every message a rule matches must contain (the longest literal run of each
    alternative of its pattern): ``in`` over these is ten times faster than ``_ANY``, and
    only records holding one of them are searched with ``_ANY``."""
    out = set()
    for r in RULES:
        if r.regex is None:
            continue
        for alt in re.split(r"\|(?![^(]*\))", r.regex.pattern):
            runs = re.split(r"[\\^$.*+?()\[\]{}|]", alt.replace("\\\"", '"'))
            best = max(runs, key=len)
            out.add(best if len(best) >= 4 else alt)
    return tuple(sorted(out, key=len)) + (',"PANIC",', ',"FATAL",')


NEEDLES = _needles()


def _may_match(text):
    for needle in NEEDLES:
        if needle in text:
            return True
    return False


_BENIGN_FATAL = re.compile(r"the database system is (starting up|shutting down|in recovery mode)"
                           r"|^connection to client lost|^terminating walreceiver|^role \".*\" does not exist"
                           r"|^database \".*\" does not exist|^no pg_hba.conf entry|^password authentication failed"
                           r"|^could not receive data from WAL stream|^terminating walsender")
_FTS_UPDATE = re.compile(r"dbid (\d+) with contentid (-?\d+) to (\w), (\w), and (\w)")
_GANG_RESET = re.compile(r"previous session was reset because its gang was disconnected "
                         r"\(session id = (\d+)\)\. The new session id = (\d+)")
_GXIDS = re.compile(r"these gxids will be cancelled to break global deadlock: *(.*)")
_SEG_IN_TEXT = re.compile(r"\bseg(-?\d+)\b")
_TZ_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)?$")


# ------------------------------------------------------------------ times


_second_cache = {}


def parse_time(text):
    """Epoch seconds of a CSV log time ``YYYY-mm-dd HH:MM:SS[.ffffff] ZONE`` (ZONE: UTC,
    GMT, Z or a numeric offset; another abbreviation is taken as UTC), or None."""
    if not text or len(text) < 19:
        return None
    head = text[:19]
    base = _second_cache.get(head)
    if base is None:
        try:
            base = calendar.timegm(time.strptime(head, "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            return None
        if len(_second_cache) > 100000:
            _second_cache.clear()
        _second_cache[head] = base
    rest = text[19:]
    frac = 0.0
    if rest.startswith("."):
        digits = rest[1:].split(" ", 1)[0].split("+", 1)[0].split("-", 1)[0]
        try:
            frac = float("0." + digits) if digits else 0.0
        except ValueError:
            return None
    zone = rest.rsplit(" ", 1)[-1].strip() if " " in rest else ""
    m = _TZ_OFFSET.match(zone) if zone else None
    if m:
        offset = int(m.group(2)) * 3600 + int(m.group(3) or 0) * 60
        base = base - offset if m.group(1) == "+" else base + offset
    return base + frac


def iso(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def parse_when(value, now=None):
    """``since``/``until`` option values: epoch seconds, ISO 8601 (no zone: UTC), a CSV log
    time, or ``-<N>m`` / ``-<N>h`` / ``-<N>s`` relative to now. Raises ValueError."""
    now = time.time() if now is None else now
    text = str(value).strip()
    m = re.match(r"^-(\d+(?:\.\d+)?)\s*([smhd])$", text)
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        epoch = parse_time(text)
        if epoch is None:
            raise ValueError("%r is neither epoch seconds, ISO 8601, a log time nor -<N>m" % value)
        return epoch
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


# ------------------------------------------------------------------ classification


def _int_tail(text, prefix):
    """``con12`` -> 12, ``dx5`` -> 5, ``seg-1`` -> -1; None when absent."""
    if not text or not text.startswith(prefix):
        return None
    try:
        return int(text[len(prefix):])
    except ValueError:
        return None


def _context_tags(msg, fields):
    text = " ".join((msg, fields[19] or "", fields[23] or ""))
    tags = []
    if "critical section" in text or "CRITICAL SECTION" in text:
        tags.append("critical_section")
    if re.search(r"Prepared|[Pp]repare|distributed transaction|dtx|DTX|DTM|[Cc]ommit|Abort|twophase", text):
        tags.append("two_phase_commit")
    if re.search(r"recovery|[Rr]edo|startup process|WAL", text):
        tags.append("recovery")
    return tags


def _summary(rule, msg, fields, node):
    where = "coordinator" if node.get("content") == -1 else "content %s" % node.get("content")
    if node.get("role") == "m":
        where += " mirror"
    who = ""
    sess = _int_tail(fields[9], "con")
    if sess:
        who = " (session %d)" % sess
    if rule.name == "fts_config_change":
        m = _FTS_UPDATE.search(msg)
        if m:
            dbid, content, role, status, mode = m.groups()
            state = {"d": "marked DOWN", "u": "up"}.get(status, status)
            sync = {"s": "in sync", "n": "NOT in sync", "c": "change tracking"}.get(mode, mode)
            return "FTS: dbid %s (content %s) now %s, %s, %s" % (
                dbid, content, "primary" if role == "p" else "mirror", state, sync)
    if rule.name == "statement_cancelled":
        reason = msg.split(":", 1)[1].strip() if ":" in msg else "pg_cancel_backend or a client cancel"
        return "%s: statement cancelled by user request (%s)%s" % (where, reason, who)
    return "%s: %s%s" % (where, msg.splitlines()[0][:300] if msg else rule.what, who)


def _severity(rule, msg, log_severity):
    sev = rule.severity
    if log_severity == "PANIC":
        sev = "critical"
    elif rule.name == "fatal" and _BENIGN_FATAL.search(msg):
        sev = "low"
    elif rule.name == "dispatcher_error" and _GANG_RESET.search(msg):
        sev = "low"
    elif rule.name == "fts_config_change":
        m = _FTS_UPDATE.search(msg)
        if m and m.group(4) == "u":
            sev = "info" if m.group(5) == "s" else "medium"
    return sev


def classify(fields, node, raw=None, epoch=None):
    """The event of one CSV log record (a list of at least 29 strings, CSV column order),
    or None when it is no incident event. ``node``: what is known of the node that wrote it
    ({content, dbid, host, role, datadir}); the record's ``seg<N>`` gives the content."""
    msg = fields[18] or ""
    log_sev = (fields[16] or "").upper()
    rule = RULES_BY_NAME["panic"] if log_sev == "PANIC" else None
    for r in (RULES if rule is None else ()):
        if r.regex is not None:
            if r.regex.search(msg):
                rule = r
                break
        elif log_sev in r.log_severities:
            rule = r
            break
    if rule is None:
        return None
    if epoch is None:
        epoch = parse_time(fields[0])
        if epoch is None:
            return None
    content = _int_tail(fields[11], "seg")
    node = dict(node or {})
    if content is not None:
        if node.get("content") is not None and node["content"] != content:
            node = {"content": content}   # a different node's record (gp_log_system's union)
        node["content"] = content
    node.setdefault("host", None)
    event = {
        "time": iso(epoch), "epoch": epoch, "class": rule.name,
        "severity": _severity(rule, msg, log_sev), "node": node,
        "pid": _int_tail(fields[3], "p"),
        "session": {"id": _int_tail(fields[9], "con"), "command": _int_tail(fields[10], "cmd")},
        "gxid": _int_tail(fields[13], "dx") or None, "local_xid": _int_tail(fields[14], "x"),
        "database": fields[2] or None, "user": fields[1] or None,
        "log_severity": log_sev, "sql_state": fields[17] or None, "message": msg,
        "detail": fields[19] or None, "context": _context_tags(msg, fields),
        "sources": list(rule.sources), "emitted_at": "%s:%s" % (fields[27], fields[28]) if fields[27] else None,
        "raw": (raw if raw is not None else ",".join(f or "" for f in fields))[:RAW_CHARS],
    }
    if rule.name == "gdd_cycle":
        m = _GXIDS.search(msg)
        if m:
            pairs = re.findall(r"(\d+)\s*\(Coordinator Pid:\s*(\d+)\)", m.group(1))
            event["cancelled_gxids"] = [int(pair[0]) for pair in pairs] or [int(g) for g in re.findall(r"\d+", m.group(1))]
            event["cancelled_pids"] = [int(pair[1]) for pair in pairs]
    if rule.name == "fts_config_change":
        m = _FTS_UPDATE.search(msg)
        if m:
            event["fts"] = {"dbid": int(m.group(1)), "content": int(m.group(2)), "role": m.group(3),
                            "status": m.group(4), "mode": m.group(5)}
    if rule.name == "panic":
        for r in RULES:
            if r.regex is not None and r.regex.search(msg):
                event["cause_class"] = r.name
                event["sources"] = list(r.sources) + event["sources"]
                break
    m = _GANG_RESET.search(msg) if rule.name == "dispatcher_error" else None
    if m:
        event["session_reset"] = [int(m.group(1)), int(m.group(2))]
    if rule.name in ("dispatcher_error",):
        segs = sorted({int(s) for s in _SEG_IN_TEXT.findall(msg + " " + (fields[19] or ""))})
        if segs:
            event["segments_named"] = segs
    event["summary"] = _summary(rule, msg, fields, node)
    return event


# ------------------------------------------------------------------ the bounded scan


def _starts_record(line):
    return (len(line) > 20 and line[4] == "-" and line[7] == "-" and line[10] == " "
            and line[13] == ":" and line[:4].isdigit())


class LogScan(object):
    """A bounded scan of CSV log text: a time window [since, until), at most ``max_lines``
    lines, until ``deadline`` (epoch seconds, time.time()), at most ``max_events`` events."""

    def __init__(self, since=None, until=None, max_lines=5000000, deadline=None, max_events=10000):
        self.since, self.until = since, until
        self.max_lines, self.deadline, self.max_events = max_lines, deadline, max_events
        self.lines = 0
        self.records = 0
        self.in_window = 0
        self.matched = 0
        self.skipped = 0
        self.skipped_examples = []
        self.files = []
        self.unreadable = []
        self.stopped = None       # why the scan stopped early, or None
        self._events = []

    # --- bounds
    def _bounded(self):
        if self.stopped:
            return True
        if self.lines >= self.max_lines:
            self.stopped = "max_lines: %d lines read, the rest was not scanned" % self.lines
        elif self.deadline is not None and time.time() > self.deadline:
            self.stopped = "deadline: the scan ran out of time after %d lines" % self.lines
        elif len(self._events) >= self.max_events:
            self.stopped = "max_events: %d events found, the rest was not scanned" % len(self._events)
        return bool(self.stopped)

    def _skip(self, where, why, text):
        self.skipped += 1
        if len(self.skipped_examples) < 5:
            self.skipped_examples.append({"where": where, "reason": why, "text": text[:200]})

    # --- input
    def scan_file(self, path, node):
        """Scan one CSV log file. Unreadable: noted in ``unreadable``, never raised."""
        if self.stopped:
            return
        try:
            if self.since is not None and os.path.getmtime(path) < self.since:
                self.files.append({"path": path, "skipped": "last written before the window"})
                return
            handle = open(path, "r", encoding="utf-8", errors="replace", newline="")
        except (IOError, OSError) as exc:
            self.unreadable.append({"path": path, "error": exc.strerror or str(exc)})
            return
        before = self.lines
        with handle:
            try:
                self.scan_lines(handle, node, where=path)
            except (IOError, OSError) as exc:
                self.unreadable.append({"path": path, "error": exc.strerror or str(exc)})
        self.files.append({"path": path, "lines": self.lines - before})

    def scan_lines(self, lines, node, where="input"):
        """Scan CSV text given as an iterable of lines (with their newlines)."""
        buf = None
        size = 0
        check = 0
        for line in lines:
            if self.stopped:
                break
            self.lines += 1
            check += 1
            if check >= 5000 or self.lines >= self.max_lines:
                check = 0
                if self._bounded():
                    break
            if _starts_record(line):
                if buf is not None:
                    self._record("".join(buf), node, where)
                buf, size = [line], len(line)
            elif buf is None:
                self._skip(where, "a line outside any record (the file starts mid-record)", line)
            elif size < MAX_RECORD_CHARS:
                buf.append(line)
                size += len(line)
        if buf is not None and not self.stopped:
            self._record("".join(buf), node, where)

    def _record(self, text, node, where):
        self.records += 1
        head = text[:40]
        epoch = parse_time(head.split(",", 1)[0])
        if epoch is None:
            self._skip(where, "no valid time at the start of the record", text)
            return
        if (self.since is not None and epoch < self.since) or (self.until is not None and epoch >= self.until):
            return
        self.in_window += 1
        if not _may_match(text):
            return
        try:
            rows = list(csv.reader(text.splitlines(True)))
        except csv.Error as exc:
            self._skip(where, "malformed CSV: %s" % exc, text)
            return
        if len(rows) != 1 or len(rows[0]) < MIN_FIELDS:
            self._skip(where, "malformed CSV record (%s)" % (
                "%d records" % len(rows) if len(rows) != 1 else "%d fields, expected 30" % len(rows[0])), text)
            return
        fields = rows[0] + [""] * (len(FIELDS) - len(rows[0]))
        self._add(fields, node, text.rstrip("\r\n"), epoch)

    def add_row(self, fields, node):
        """One row already split into fields (``gp_log_system``); None values allowed."""
        self.lines += 1
        self.records += 1
        fields = ["" if f is None else str(f) for f in fields]
        fields += [""] * (len(FIELDS) - len(fields))
        epoch = parse_time(fields[0])
        if epoch is None:
            self._skip("gp_log_system", "no valid time", ",".join(fields))
            return
        self.in_window += 1
        self._add(fields, node, None, epoch)

    def _add(self, fields, node, raw, epoch):
        event = classify(fields, node, raw, epoch)
        if event is not None:
            self.matched += 1
            if len(self._events) < self.max_events:
                self._events.append(event)
            if len(self._events) >= self.max_events and not self.stopped:
                self.stopped = "max_events: %d events found, the rest was not scanned" % len(self._events)

    # --- output
    def events(self):
        return sorted(self._events, key=lambda e: (e["epoch"], e["node"].get("content") or 0))

    def stats(self):
        return {"lines_read": self.lines, "records": self.records, "records_in_window": self.in_window,
                "events": self.matched, "skipped_lines": self.skipped,
                "skipped_examples": self.skipped_examples, "files": self.files,
                "unreadable": self.unreadable, "stopped": self.stopped, "complete": self.stopped is None}


def history_record(when, dbid, description):
    """A ``gp_configuration_history`` row (time text, dbid, description) as the 30 fields of a
    coordinator log record: FTS writes its configuration changes there, not to the log."""
    fields = [""] * len(FIELDS)
    fields[0], fields[11], fields[16], fields[17] = when, "seg-1", "LOG", "00000"
    fields[18] = description or ""
    fields[19] = "from gp_configuration_history (dbid %s)" % dbid
    fields[27] = "fts.c"
    return fields


def log_files(datadir):
    """The CSV log files of a data directory (``<datadir>/log/*.csv``), oldest first."""
    return sorted(glob.glob(os.path.join(datadir, "log", "*.csv")))


def node_of_datadir(datadir, host=None):
    """What the data directory says of its node: dbid (``internal.auto.conf``), role
    (``standby.signal``: a mirror or the standby coordinator)."""
    node = {"datadir": datadir, "host": host, "dbid": None, "content": None,
            "role": "m" if os.path.exists(os.path.join(datadir, "standby.signal")) else "p"}
    try:
        with open(os.path.join(datadir, "internal.auto.conf")) as f:
            m = re.search(r"gp_dbid\s*=\s*'?(\d+)", f.read())
            if m:
                node["dbid"] = int(m.group(1))
    except (IOError, OSError):
        pass
    return node


# ------------------------------------------------------------------ correlation


def _sev_max(events):
    return max((e["severity"] for e in events), key=lambda s: SEVERITY_RANK[s])


class _Union(object):
    def __init__(self, n):
        self.parent = list(range(n))

    def find(self, i):
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


_NO_SESSION_LINK = ("gdd_cycle", "crash_reset")
# Node-wide events: the same class on the same node within seconds is one incident
# (statements, sessions and dispatcher errors are not: they are linked by session or gxid).
_SAME_CLASS_LINK = ("syncrep_off", "syncrep_on", "fts_config_change", "fts_probe_failure", "crash",
                    "crash_reset", "crash_recovery", "gdd_cycle", "lockfile_exists")
# Consequences: a chain is said to be started by its first event of another class when
# that one follows within ``link_seconds`` (a bystander's "terminating connection because
# of crash" can be logged a few ms before the crash itself).
_CONSEQUENCES = ("crash_reset", "crash_recovery", "restart_done", "fault_injected")
_CRASH_CLASSES = ("panic", "crash", "crash_reset", "crash_recovery", "restart_done", "fatal")
_NODE_DOWN_CLASSES = ("panic", "crash", "crash_reset", "shutdown", "fts_probe_failure")


def chains(events, signals=None, link_seconds=5.0, crash_seconds=120.0, fts_seconds=300.0):
    """Link events into chains (incidents). Two events are linked when they share a
    distributed session (``gp_session_id``) within ``crash_seconds``, a gxid, or when
    (by time) a node's crash, reset and recovery follow each other within
    ``crash_seconds``; a coordinator event names a segment (``seg<N>``) that failed within
    ``link_seconds``; a GDD cycle lists a victim's gxid; FTS acts on a content within
    ``fts_seconds`` after that content failed; a primary's sync-off follows FTS's update of
    its content. Chains of one ``info`` event are left out. Returns chains, oldest first:
    {``id``, ``started_by`` (the summary of the first event that is no mere consequence),
    ``start``, ``end``, ``severity``,
    ``classes``, ``contents``, ``sessions``, ``gxids``, ``events`` (indexes into
    ``events``), ``signals``, ``text`` (class → class → ...)}."""
    n = len(events)
    u = _Union(n)
    by_session, by_gxid = {}, {}
    for i, e in enumerate(events):
        sid = e["session"].get("id")
        if e["class"] in _NO_SESSION_LINK:
            sid = None   # GDD's own session, or a bystander ended by a crash
        for old in e.get("session_reset", ())[:1]:
            prev = by_session.get(old)
            if prev is not None:
                u.union(prev, i)
        if sid:
            prev = by_session.get(sid)
            if prev is not None and e["epoch"] - events[prev]["epoch"] <= crash_seconds:
                u.union(prev, i)
            by_session[sid] = i
        if e.get("gxid"):
            by_gxid.setdefault(e["gxid"], []).append(i)
    for members in by_gxid.values():
        for j in members[1:]:
            u.union(members[0], j)
    # GDD: the cycle names the gxids it cancels; the victims carry them
    for i, e in enumerate(events):
        for g in e.get("cancelled_gxids", []):
            for j in by_gxid.get(g, []):
                u.union(i, j)
    # by time (events are sorted by time: a window over the list)
    start = 0
    for i, e in enumerate(events):
        while events[start]["epoch"] < e["epoch"] - fts_seconds:
            start += 1
        c = e["node"].get("content")
        for j in range(start, i):
            p = events[j]
            dt = e["epoch"] - p["epoch"]
            pc = p["node"].get("content")
            if (e["class"] in _CRASH_CLASSES and p["class"] in _CRASH_CLASSES and pc == c
                    and p["node"].get("role") == e["node"].get("role") and dt <= crash_seconds
                    and e["severity"] != "low" and p["severity"] != "low"):
                u.union(i, j)
            elif (e["class"] == "restart_done" and p["class"] in _CRASH_CLASSES and pc == c
                  and dt <= crash_seconds):
                u.union(i, j)
            elif (e["class"] in ("dispatcher_error", "dtx_failure", "panic", "crash") and c == -1
                  and pc in e.get("segments_named", ()) and dt <= link_seconds
                  and p["class"] in _CRASH_CLASSES + ("dtx_failure",)):
                u.union(i, j)
            elif (e["class"] in ("dispatcher_error", "dtx_failure") and c == -1 and pc is not None and pc >= 0
                  and p["class"] in ("panic", "crash", "dtx_failure") and dt <= link_seconds
                  and not e.get("segments_named")):
                u.union(i, j)
            elif (c == -1 and e["class"] in ("panic", "crash") and pc == -1
                  and p["class"] in ("dtx_failure", "dispatcher_error") and dt <= link_seconds):
                u.union(i, j)
            elif (e["class"] in ("fts_config_change", "fts_promotion") and e.get("fts", {}).get("content", c) in (pc,)
                  and p["class"] in _NODE_DOWN_CLASSES + ("fts_config_change",) and dt <= fts_seconds):
                u.union(i, j)
            elif (e["class"] in ("syncrep_off", "syncrep_on", "fts_promotion") and p["class"] == "fts_config_change"
                  and p.get("fts", {}).get("content") == c and dt <= link_seconds * 6):
                u.union(i, j)
            elif (e["class"] == p["class"] and pc == c and dt <= link_seconds
                  and e["node"].get("role") == p["node"].get("role") and e["class"] in _SAME_CLASS_LINK):
                u.union(i, j)
            elif (e["class"] == "syncrep_off" and p["class"] in _NODE_DOWN_CLASSES and pc == c
                  and p["node"].get("role") == "m" and dt <= fts_seconds):
                u.union(i, j)
            elif (e["class"] == "gdd_victim" and p["class"] == "gdd_cycle" and dt <= link_seconds
                  and not p.get("cancelled_gxids")):
                u.union(i, j)
            elif (e["class"] == "gdd_cycle" and p["class"] == "gdd_cycle" and dt <= 1.0):
                u.union(i, j)
    groups = collections.OrderedDict()
    for i in range(n):
        groups.setdefault(u.find(i), []).append(i)
    out = []
    for members in groups.values():
        evs = [events[i] for i in members]
        if len(evs) == 1 and evs[0]["severity"] in ("info", "low"):
            continue
        classes = []
        for e in evs:
            if e["class"] not in classes:
                classes.append(e["class"])
        root = evs[0]
        causes = [e for e in evs if e["class"] not in _CONSEQUENCES and e["severity"] not in ("low", "info")]
        if (root["class"] in _CONSEQUENCES or root["severity"] in ("low", "info")) and causes \
                and causes[0]["epoch"] - root["epoch"] <= link_seconds:
            root = causes[0]
        chain = {
            "id": len(out) + 1, "started_by": root["summary"], "start": evs[0]["time"],
            "end": evs[-1]["time"], "severity": _sev_max(evs), "classes": classes,
            "contents": sorted({e["node"].get("content") for e in evs if e["node"].get("content") is not None}),
            "sessions": sorted({e["session"]["id"] for e in evs if e["session"].get("id")}),
            "gxids": sorted({e["gxid"] for e in evs if e.get("gxid")}),
            "events": members, "signals": [],
            "text": " → ".join(classes),
        }
        pids = {e["pid"] for e in evs if e.get("pid")}
        lo, hi = evs[0]["epoch"] - 60.0, evs[-1]["epoch"] + 1.0
        for s in signals or ():
            target = s.get("target_pid")
            when = s.get("epoch")
            if target in pids and when is not None and lo <= when <= hi:
                chain["signals"].append(s)
        if chain["signals"]:
            chain["text"] = "signal %s → %s" % (chain["signals"][0].get("signal"), chain["text"])
        out.append(chain)
    for e in events:
        e.setdefault("chain", None)
    for chain in out:
        for i in chain["events"]:
            events[i]["chain"] = chain["id"]
    return out


def merge(events, others):
    """``events`` and ``others`` (events of other scans, e.g. other hosts' files) as one list
    by time; an event present in both (same time, pid and message) is kept once; ``others``
    without ``epoch``/``class``/``node``/``session`` are dropped."""
    seen = {(e["epoch"], e.get("pid"), e["message"]) for e in events}
    out = list(events)
    for e in others or ():
        if not isinstance(e, dict) or not all(k in e for k in ("epoch", "class", "severity", "node", "session", "message")):
            continue
        key = (e["epoch"], e.get("pid"), e["message"])
        if key not in seen:
            seen.add(key)
            out.append(dict(e, chain=None))
    return sorted(out, key=lambda e: (e["epoch"], (e["node"] or {}).get("content") or 0))


def summary(events):
    """{class: {severity: count}} over the events."""
    out = {}
    for e in events:
        per = out.setdefault(e["class"], {})
        per[e["severity"]] = per.get(e["severity"], 0) + 1
    return out


def timeline_lines(events, chain_list, limit=30):
    """Short lines for the play output: each chain, then the count of events."""
    lines = ["%d log event(s), %d chain(s)" % (len(events), len(chain_list))]
    for c in chain_list[:limit]:
        lines.append("chain %d [%s] %s: %s (started by: %s)" % (
            c["id"], c["severity"], c["start"], c["text"], c["started_by"]))
    return lines
