# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connections to a Greenplum / Cloudberry cluster: the coordinator, and single nodes
in utility mode.

Public API (other module_utils and every module use these):

- ``connection_argument_spec() -> dict``: the shared module options, documented by
  the doc fragment ``gpops.greenplum.connection``: ``login_host``, ``login_port``,
  ``login_user``, ``login_password`` (no_log), ``login_db`` (each defaulting to
  ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``, ``PGDATABASE``, then to libpq's
  defaults), ``connect_timeout`` (int seconds, default 5), ``statement_timeout``
  (float seconds, default 30), ``ssl_mode``.
- ``connect(params, host=None, port=None, dbname=None, utility=False, server=None,
  autocommit=True, statement_timeout=None) -> psycopg.Connection``: every connection
  carries ``connect_timeout``, ``statement_timeout`` and ``lock_timeout`` (so that
  collection never queues behind a lock itself). ``utility=True`` adds the flavor's
  utility-mode option (docs/greenplum-internals.md#utility-mode). Raises ``GpConnectionError``.
- ``server_info(conn) -> ServerInfo``: flavor (``greenplum``, ``cloudberry``,
  ``sandbox``), major version, version string and number, from
  ``gp_server_version_num`` / ``gp_server_version`` and ``version()``
  (docs/greenplum-internals.md#server-and-version). Raises ``NotGreenplumError`` for any other server.
- ``run_on_nodes(nodes, fn, timeout, max_workers=16) -> (results_by_content,
  unreachable_by_content)``: ``fn(node)`` on every node, ``max_workers`` at a time, all
  bounded by one client-side deadline; abandoned statements are cancelled.
- ``cancel_connections(conns, wait=2.0)``: cancel what these connections still run.
- ``run_with_deadline(fn, timeout, abandon=()) -> (ok, result or reason)`` and
  ``call_with_deadline(fn, timeout, node) -> result`` (raises): one call under the
  same client-side deadline.
- ``GpConnectionError(node, reason)``, ``NotGreenplumError``, ``describe_node(node)``.

Requires psycopg 3 (``HAS_PSYCOPG`` / ``PSYCOPG_IMPORT_ERROR`` let modules fail with
``missing_required_lib``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import queue
import re
import threading
import time
import traceback

from ansible.module_utils.basic import env_fallback
from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql

try:
    import psycopg
    from psycopg.rows import dict_row
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised on hosts without psycopg
    psycopg = None
    dict_row = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()

APPLICATION_NAME = "gpops.greenplum"
SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
# Collection reads catalog views only; a conflicting lock request (DDL queued on a
# catalog) must make it fail fast rather than queue: it would join the hang it studies.
LOCK_TIMEOUT_S = 1.0
# Seconds given to cancel requests for abandoned statements (sent in parallel, after the
# deadline): a frozen node never answers its cancel either.
CANCEL_WAIT_S = 2.0
# Nodes read at once by the per-node fallback (one connection each); clusters have
# hundreds of primaries, and each connection is a backend on that node.
DEFAULT_MAX_WORKERS = 16


def connection_argument_spec():
    """The shared connection options (doc fragment ``gpops.greenplum.connection``)."""
    return dict(
        login_host=dict(type="str", fallback=(env_fallback, ["PGHOST"])),
        login_port=dict(type="int", fallback=(env_fallback, ["PGPORT"])),
        login_user=dict(type="str", fallback=(env_fallback, ["PGUSER"])),
        # No fallback: libpq reads PGPASSWORD (and ~/.pgpass) itself. An Ansible fallback
        # would make the password a no_log value and mask any equal string in results
        # (a user named like their password shows as VALUE_SPECIFIED_IN_NO_LOG_PARAMETER).
        login_password=dict(type="str", no_log=True),
        login_db=dict(type="str", fallback=(env_fallback, ["PGDATABASE"])),
        connect_timeout=dict(type="int", default=5),
        statement_timeout=dict(type="float", default=30.0),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES),
        max_workers=dict(type="int", default=DEFAULT_MAX_WORKERS),
    )


class GpConnectionError(Exception):
    """A node could not be reached or did not answer.

    ``node`` names it (``coordinator (content -1, dbid 1, mdw:5432)``), ``reason``
    says why, starting with a short kind: ``timeout``, ``connection refused``,
    ``authentication failed``, ``unknown host``, ``database does not exist``,
    ``in recovery``, ``invalid setting``, ``permission denied``, ``error``;
    ``tool_error`` tells the tool's own faults from a node's.
    """

    def __init__(self, node, reason):
        self.node = node
        self.reason = reason
        hint = " (a fault of the login, its privileges or the settings it sent, not of the cluster)"
        super(GpConnectionError, self).__init__("cannot reach %s: %s%s" % (
            node, reason, hint if is_tool_error(reason) else ""))

    @property
    def tool_error(self):
        """True when the cause is the tool's (``is_tool_error``), not the node's."""
        return is_tool_error(self.reason)


class NotGreenplumError(Exception):
    """The server is not Greenplum, Cloudberry or the sandbox (e.g. plain PostgreSQL)."""


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """What the coordinator says it is.

    ``flavor``: ``greenplum`` | ``cloudberry`` | ``sandbox``; ``major``: 6, 7 (Greenplum),
    1, 2, 3 (Cloudberry); ``version``: e.g. ``7.0.0-beta.0+d766805``; ``version_num``:
    e.g. 70000; ``pg_version``: the PostgreSQL base, e.g. ``12.12``; ``version_string``:
    the full ``version()`` text.
    """

    flavor: str
    major: int
    version: str
    version_num: int
    pg_version: str
    version_string: str

    def as_dict(self):
        return dataclasses.asdict(self)

    @property
    def utility_option(self):
        """The GUC that opens a utility-mode session: Greenplum 6 knows only
        ``gp_session_role``; Greenplum 7, Cloudberry and the sandbox ``gp_role``
        (docs/greenplum-internals.md#utility-mode)."""
        if self.flavor == "greenplum" and self.major <= 6:
            return "gp_session_role"
        return "gp_role"

    @property
    def has_gp_stat_activity(self):
        """``gp_stat_activity`` exists from Greenplum 7 on
        (docs/greenplum-internals.md#locks-and-sessions)."""
        return not (self.flavor == "greenplum" and self.major <= 6)


# "(Greenplum Database 7.0.0 build commit:...)", "(Cloudberry Database 1.6.0 build dev)",
# "(Apache Cloudberry 2.0.0-incubating build 1)".
_PRODUCT_RE = re.compile(r"\(([A-Za-z][A-Za-z ]*?) ([0-9][^ )]*)")
_PG_RE = re.compile(r"PostgreSQL (\d+(?:\.\d+)?)")


def _flavor_of(product):
    name = product.lower()
    if "greenplum" in name:
        return "greenplum"
    if "cloudberry" in name:
        return "cloudberry"
    return None


def _version_num(version):
    """``7.0.0-beta.0`` -> 70000, ``6.25.3`` -> 62503 (Greenplum's MMmmpp form)."""
    parts = [int(p) for p in re.findall(r"\d+", version.split("-")[0].split("+")[0])[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0] * 10000 + parts[1] * 100 + parts[2]


def parse_server_version(version_string, gp_server_version=None, gp_server_version_num=None):
    """Build a ``ServerInfo`` from ``version()`` and, when set, ``gp_server_version`` and
    ``gp_server_version_num`` (which win for the version; ``version()`` gives the flavor).

    Tolerates trailing text after the product (GP7 appends a builder's name).
    Raises ``NotGreenplumError`` when ``version()`` names no known product.
    Source: docs/greenplum-internals.md#server-and-version; Greenplum ``gpversion.py``.
    """
    text = version_string or ""
    flavor = version = None
    for product, number in _PRODUCT_RE.findall(text):
        flavor = _flavor_of(product)
        if flavor:
            version = number
            break
    if "sandbox" in (version or "").lower() or "sandbox" in (gp_server_version or "").lower():
        flavor = "sandbox"  # tests/sandbox: "(Greenplum Database 7.0.0-sandbox build gpsandbox)"
    if flavor is None:
        raise NotGreenplumError(
            "the server is not Greenplum or Cloudberry (version(): %r)" % (text[:120],))
    if gp_server_version:
        version = gp_server_version.split(" build ")[0].strip()
    if not version:
        raise NotGreenplumError("cannot read the %s version from %r" % (flavor, text[:120]))
    version_num = int(gp_server_version_num) if gp_server_version_num else _version_num(version)
    pg = _PG_RE.search(text)
    return ServerInfo(flavor=flavor, major=version_num // 10000, version=version,
                      version_num=version_num, pg_version=pg.group(1) if pg else "",
                      version_string=text)


def server_info(conn):
    """Ask the server what it is (one statement; ``current_setting(..., true)`` is NULL
    where the GUC does not exist, so a plain PostgreSQL answers without error).
    Raises ``NotGreenplumError``."""
    with conn.cursor() as cur:
        cur.execute(sql.SERVER_VERSION)
        version, gp_version, gp_version_num = cur.fetchone()
    return parse_server_version(version, gp_version or None, gp_version_num or None)


def describe_node(node=None, host=None, port=None):
    """A node's name for messages: ``content 0 (dbid 2, 127.0.0.1:7002)``; the
    coordinator (``node`` None or content -1) is named as such."""
    if node is None:
        where = "%s:%s" % (host or "(libpq default host)", port or "(libpq default port)")
        return "coordinator (%s)" % where
    where = "%s:%s" % (host or node.address, port or node.port)
    if node.content == -1:
        return "coordinator (content -1, dbid %s, %s)" % (node.dbid, where)
    return "content %s (dbid %s, %s)" % (node.content, node.dbid, where)


_REASONS = (
    ("timeout", re.compile(r"timeout expired|timed out|canceling statement due to statement timeout")),
    ("connection refused", re.compile(r"connection refused")),
    ("authentication failed", re.compile(
        r"authentication failed|no password supplied|no pg_hba\.conf entry|password is required"
        r'|role "[^"]*" does not exist|role "[^"]*" is not permitted to log in')),
    ("unknown host", re.compile(r"could not translate host name|name or service not known")),
    ("database does not exist", re.compile(r'database "[^"]*" does not exist')),
    ("in recovery", re.compile(r"in recovery mode|is starting up|is shutting down")),
    ("invalid setting", re.compile(
        r"invalid value for parameter|unrecognized configuration parameter|is outside the valid range")),
    ("permission denied", re.compile(r"permission denied|must be superuser|must be a member of")),
)
# Server errors by SQLSTATE (psycopg's ``Error.sqlstate``; libpq gives none for a failed
# connection start, whose message the patterns above read). Source: PostgreSQL's
# src/backend/utils/errcodes.txt.
_SQLSTATES = {
    "28P01": "authentication failed",     # invalid_password
    "28000": "authentication failed",     # invalid_authorization_specification (pg_hba, role)
    "3D000": "database does not exist",   # invalid_catalog_name
    "42501": "permission denied",         # insufficient_privilege
    "22023": "invalid setting",           # invalid_parameter_value
    "42704": "invalid setting",           # undefined_object (an unknown GUC)
    "57P03": "in recovery",               # cannot_connect_now
    "57014": "timeout",                   # query_canceled (statement_timeout)
}
# Kinds that are the tool's own fault (its login, database, privileges or settings),
# never a node's: they fail the module instead of becoming a cluster finding.
TOOL_ERROR_KINDS = ("authentication failed", "database does not exist", "invalid setting",
                    "permission denied")
# libpq repeats the address we already name, and one line per attempt (SSL, then not).
_LIBPQ_PREFIX = re.compile(r'^(connection failed: )?(connection to server (at|on) .*?failed: )?')


def classify_error(exc):
    """``kind: message`` for a failure: the kind (``timeout``, ``connection refused``,
    ``authentication failed``, ``unknown host``, ``database does not exist``,
    ``in recovery``, ``invalid setting``, ``permission denied``, ``error``), from the
    error's SQLSTATE when the server sent one, else from the libpq/server message,
    then the message's first line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    text = " ".join(_LIBPQ_PREFIX.sub("", lines[0]).split()) if lines else exc.__class__.__name__
    kind = _SQLSTATES.get(getattr(exc, "sqlstate", None) or "")
    if kind:
        return "%s: %s" % (kind, text)
    low = text.lower()
    for kind, pattern in _REASONS:
        if pattern.search(low):
            return "%s: %s" % (kind, text)
    return "error: %s" % text


_TOOL_KIND = re.compile(r"(?:^|: )(?:%s): " % "|".join(TOOL_ERROR_KINDS))


def is_tool_error(reason):
    """Whether a ``classify_error`` reason (possibly after a prefix ending in ``: ``) is
    the tool's own fault (``TOOL_ERROR_KINDS``: its login, database, privileges or
    settings) rather than a node's state."""
    return bool(_TOOL_KIND.search(reason or ""))


def connect(params, host=None, port=None, dbname=None, utility=False, server=None,
            autocommit=True, statement_timeout=None):
    """Open a connection with the module's connection ``params``.

    ``host``/``port``/``dbname`` override ``login_host``/``login_port``/``login_db``
    (used for segments, whose address comes from ``gp_segment_configuration``).
    ``utility=True`` opens a utility-mode session (``-c gp_role=utility``, or
    ``-c gp_session_role=utility`` when ``server`` is Greenplum 6; without ``server``
    the GP7 spelling is used). ``statement_timeout`` (seconds) overrides the option for
    this connection. Unset options are left to libpq (which reads ``PG*``).
    Raises ``GpConnectionError`` naming the node and the cause.
    """
    if not HAS_PSYCOPG:
        raise GpConnectionError(describe_node(None, host, port), "psycopg (3) is not installed")
    timeout_s = statement_timeout if statement_timeout is not None else params.get("statement_timeout") or 30.0
    options = ["-c statement_timeout=%d" % max(1, int(timeout_s * 1000)),
               "-c lock_timeout=%d" % int(min(LOCK_TIMEOUT_S, timeout_s) * 1000)]
    if utility:
        option = server.utility_option if server is not None else "gp_role"
        options.append("-c %s=utility" % option)
    kwargs = dict(
        host=host or params.get("login_host"),
        port=port or params.get("login_port"),
        user=params.get("login_user"),
        password=params.get("login_password"),
        dbname=dbname or params.get("login_db"),
        sslmode=params.get("ssl_mode"),
        connect_timeout=max(1, int(params.get("connect_timeout") or 5)),
        application_name=APPLICATION_NAME,
        options=" ".join(options),
    )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        conn = psycopg.connect(autocommit=autocommit, **kwargs)
        _track(conn)
        return conn
    except psycopg.Error as exc:
        node = describe_node(None, kwargs.get("host"), kwargs.get("port"))
        raise GpConnectionError(node, classify_error(exc))


def query(conn, statement, args=None):
    """Run one statement and return its rows as dicts keyed by column name."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement, args)
        return cur.fetchall() if cur.description else []


def _start(fn, name):
    """Start ``fn()`` in a daemon thread; its outcome lands in the returned dict as
    ``result``: ``(True, value)`` or ``(False, exception)``."""
    box = {}

    def target():
        try:
            box["result"] = (True, fn())
        except Exception as exc:  # a node's failure is data for the caller
            box["result"] = (False, exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread, box


def _reason(exc):
    return exc.reason if isinstance(exc, GpConnectionError) else classify_error(exc)


def _timeout_reason(timeout):
    return "timeout: no answer within %.1f s" % timeout


def run_with_deadline(fn, timeout, abandon=()):
    """Run ``fn()`` and wait at most ``timeout`` seconds: ``(True, result)`` or
    ``(False, reason)``. ``abandon``: connections whose running statement is cancelled
    (``cancel_connections``) when ``fn`` does not return in time.

    Why a thread: a stopped server (SIGSTOP, a hung host) accepts TCP and never
    answers, so neither ``connect_timeout`` nor the server-side ``statement_timeout``
    can end the wait; an abandoned daemon thread never keeps the process from exiting.
    """
    thread, box = _start(fn, "gpops-deadline")
    thread.join(max(0.0, timeout))
    ok, value = box.get("result", (False, None))
    if ok:
        return True, value
    if "result" not in box:
        cancel_connections(abandon)
    return False, _timeout_reason(timeout) if value is None else _reason(value)


def call_with_deadline(fn, timeout, node):
    """Return ``fn()`` or raise: ``NotGreenplumError`` and ``GpConnectionError`` as
    raised, anything else (and no answer within ``timeout`` seconds) as a
    ``GpConnectionError`` naming ``node``."""
    thread, box = _start(fn, "gpops-deadline")
    thread.join(max(0.0, timeout))
    ok, value = box.get("result", (False, None))
    if ok:
        return value
    if isinstance(value, (GpConnectionError, NotGreenplumError)):
        raise value
    raise GpConnectionError(node, _timeout_reason(timeout) if value is None else _reason(value))


def max_workers_of(params):
    """The ``max_workers`` option of ``params`` (``DEFAULT_MAX_WORKERS`` when unset)."""
    return int(params.get("max_workers") or DEFAULT_MAX_WORKERS)


def run_on_nodes(nodes, fn, timeout, max_workers=DEFAULT_MAX_WORKERS):
    """Run ``fn(node)`` for every node, ``max_workers`` nodes at a time.

    ``nodes``: objects with ``content`` (e.g. ``records.SegmentConfig``); ``timeout``:
    seconds, one deadline shared by all (the wall time is that of the slowest node, at
    most ``timeout`` plus ``CANCEL_WAIT_S``); ``max_workers``: how many nodes are talked
    to at once (Greenplum clusters have hundreds of primaries; each call is a
    connection). Returns ``(results_by_content, unreachable_by_content)``: ``fn``'s
    results, and for every node that raised, did not answer in time, or was not started
    before the deadline, the reason (``timeout: ...``, ``connection refused: ...``,
    ``error: ...``).

    When the deadline passes, the statements still running on the connections that
    ``fn`` opened with ``connect`` (in its worker thread) are cancelled
    (``cancel_connections``), so a slow node costs its timeout and its statement does not
    go on on the server; ``fn``'s ``with connect(...)`` then closes the connection. The
    workers are daemon threads (``concurrent.futures`` workers are joined at interpreter
    exit, so a frozen node would keep the module from ever returning).
    """
    deadline = time.monotonic() + timeout
    pending = queue.Queue()
    for node in nodes:
        pending.put(node)
    lock = threading.Lock()
    finished, running, all_done = {}, {}, threading.Event()
    not_started = "timeout: not started within %.1f s (max_workers %d, all busy)" % (timeout, max_workers)
    total = len(nodes)

    def worker():
        while True:
            try:
                node = pending.get_nowait()
            except queue.Empty:
                return
            if time.monotonic() >= deadline:
                outcome = (False, not_started)
            else:
                with lock:
                    running[node.content] = _tracking_list()
                try:
                    outcome = (True, fn(node))
                except Exception as exc:  # a node's failure is data for the caller
                    outcome = (False, exc)
                finally:
                    _untrack_thread()
            with lock:
                running.pop(node.content, None)
                finished[node.content] = outcome
                if len(finished) == total:
                    all_done.set()

    if total == 0:
        return {}, {}
    for index in range(min(max(1, int(max_workers)), total)):
        threading.Thread(target=worker, name="gpops-node-worker-%d" % index, daemon=True).start()
    all_done.wait(max(0.0, deadline - time.monotonic()))
    while True:  # the workers are all busy past the deadline: nobody takes these any more
        try:
            node = pending.get_nowait()
        except queue.Empty:
            break
        with lock:
            finished[node.content] = (False, not_started)
    with lock:
        abandoned = [conn for conns in running.values() for conn in conns]
        outcomes = dict(finished)
    cancel_connections(abandoned)
    results, unreachable = {}, {}
    for node in nodes:
        ok, value = outcomes.get(node.content, (False, None))
        if ok:
            results[node.content] = value
        else:
            unreachable[node.content] = (
                _timeout_reason(timeout) if value is None else value if isinstance(value, str) else _reason(value))
    return results, unreachable


# Connections opened by ``connect`` in a thread that tracks them (a ``run_on_nodes``
# worker): the ones to cancel when that call is abandoned.
_TRACKED = threading.local()


def _tracking_list():
    _TRACKED.conns = []
    return _TRACKED.conns


def _untrack_thread():
    _TRACKED.conns = None


def _track(conn):
    conns = getattr(_TRACKED, "conns", None)
    if conns is not None:
        conns.append(conn)


def cancel_connections(conns, wait=CANCEL_WAIT_S):
    """Ask the server to cancel whatever each connection in ``conns`` still runs
    (``psycopg.Connection.cancel_safe``, else ``cancel()``), all in parallel, waiting at
    most ``wait`` seconds in all; closed connections are skipped. Never raises: a node
    that does not answer its cancel request either (frozen) is left to its own
    ``statement_timeout`` and to the close of the socket at process exit."""
    threads = []
    for conn in conns:
        if conn is None or conn.closed:
            continue

        def cancel(conn=conn):
            try:
                if hasattr(conn, "cancel_safe"):
                    conn.cancel_safe(timeout=wait)
                else:  # psycopg < 3.2
                    conn.cancel()
            except Exception:  # noqa: BLE001 - best effort; the deadline already passed
                pass

        thread = threading.Thread(target=cancel, name="gpops-cancel", daemon=True)
        thread.start()
        threads.append(thread)
    stop = time.monotonic() + wait
    for thread in threads:
        thread.join(max(0.0, stop - time.monotonic()))
