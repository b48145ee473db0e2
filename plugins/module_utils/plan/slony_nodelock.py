# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stale Slony-I node locks (``sl_nodelock``), decided by backend identity.

What Slony-I records (``slony1_base.sql``, ``slony1_funcs.sql``, Slony-I 2.2):
- ``sl_nodelock(nl_nodeid int4, nl_conncnt serial, nl_backendpid int4)``,
  primary key ``sl_nodelock-pkey`` (nl_nodeid, nl_conncnt). No timestamp.
- slon's local listen thread runs ``select cleanupNodelock(); insert into
  sl_nodelock values (<node>, 0, pg_backend_pid())``; every other slon
  connection calls ``registerNodeConnection(<node>)`` (a fresh ``nl_conncnt``).
- ``cleanupNodelock()`` deletes a row only when ``killBackend(pid, 'NULL')``,
  i.e. ``kill(pid, 0)``, fails. A PID now used by any other process of the
  server's OS user survives it, and slon then fails forever with
  ``duplicate key value violates unique constraint "sl_nodelock-pkey"``.
- Before registering, slon names its connection ``slon.<thread>`` with
  ``store_application_name()`` (``application_name``, e.g. ``slon.local_listen``).

The rule used here (docs/stale-locks.md#slony-i-node-locks-gp_nodelock): a row is ``live`` only if a
backend with ``nl_backendpid`` is in ``pg_stat_activity`` of this database,
is a client backend, runs as the Slony user, carries a slon
``application_name`` of the thread that writes such a row (``nl_conncnt`` 0:
the local listen thread, ``slon.local_listen``; any other: another slon
thread), does not back another node's row its thread fits (one backend
registers one row: a backend of node 2's slon does not own node 1's row), and
started no later than the row was written. The
row's time is its inserting transaction's commit time
(``pg_xact_commit_timestamp(xmin)``) when ``track_commit_timestamp`` is on;
otherwise it is unknown and the evidence says so: identity then rests on the
database, the user and the ``application_name`` that slon sets before it
writes the row (a reused PID belongs to a session that did not). A row is
``stale`` when one of these facts is proven false; an unknown fact (the row
time, a ``backend_start`` hidden from a non-superuser) is stated in the
evidence and never counts as proof. Only ``stale`` rows are ever deleted.

Layers: :func:`find_clusters`/:func:`read_rows`/:func:`read_backends` read,
:func:`judge_row` decides (pure), :func:`plan` turns the stale rows into ``delete_row``
steps (``Reason.STALE_NODELOCK_ROW``) with a ``row`` guard (the key and every value
judged: ``nl_backendpid``, the row version ``xmin``, and the backend with that pid as it
was seen), and ``act/nodelock_row_deleter.py`` deletes each row with that guard as the
``DELETE``'s own ``WHERE`` (docs/safety.md#slony-i-node-locks).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import datetime
import re
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import query
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.reasons import Reason
from ansible_collections.gpops.greenplum.plugins.module_utils.plan.steps import Guard, Plan, Refusal, Step

LIVE, STALE = "live", "stale"
SLON_APPLICATION_NAME = r"^slon\."
# The one slon thread that writes a row with nl_conncnt = 0 (local_listen.c); every other
# row comes from registerNodeConnection() of another thread (remote listener, workers).
LOCAL_LISTEN = "slon.local_listen"


@dataclasses.dataclass(frozen=True)
class SlonyCluster:
    """A Slony-I cluster schema (``_<cluster name>``) holding ``sl_nodelock``."""

    schema: str
    owner: str

    @property
    def name(self):
        return self.schema[1:]


@dataclasses.dataclass(frozen=True)
class NodeLock:
    """One ``sl_nodelock`` row; ``row_written`` is its commit time or None (unknown)."""

    nl_nodeid: int
    nl_conncnt: int
    nl_backendpid: int
    row_xmin: str
    row_written: Optional[datetime.datetime]

    @property
    def key(self):
        return (self.nl_nodeid, self.nl_conncnt)


def schema_of(cluster_name):
    """Slony-I names a cluster's schema ``_`` + cluster name (slonik ``cluster name``)."""
    return "_" + cluster_name


def find_clusters(conn, cluster_name=None):
    """Slony-I cluster schemas of the connected database (all, or the named one)."""
    rows = query(conn, sql.SLONY_CLUSTERS, {"schema": schema_of(cluster_name) if cluster_name else None})
    return [SlonyCluster(schema=r["schema"], owner=r["owner"]) for r in rows]


def read_rows(conn, cluster, key=None, lock=False):
    """The cluster's ``sl_nodelock`` rows (or the one with ``key`` = (nodeid, conncnt))."""
    params = {"nodeid": key[0], "conncnt": key[1]} if key else None
    statement = sql.nodelock_rows(cluster.schema, by_key=bool(key), for_update=lock)
    return [NodeLock(**r) for r in query(conn, statement, params)]


def read_backends(conn, pids):
    """``pg_stat_activity`` rows for ``pids``, keyed by pid (the server's own view, any database)."""
    return {r["pid"]: r for r in query(conn, sql.BACKENDS_BY_PIDS, {"pids": list(pids)})}


def _check(name, passed, detail):
    return {"check": name, "passed": passed, "detail": detail}


def thread_fits(row, name):
    """Whether a backend named ``name`` (its ``application_name``) is the slon thread that writes ``row``.

    A row with ``nl_conncnt`` 0 is written only by the local listen thread
    (``slon.local_listen``); any other row by ``registerNodeConnection()`` of another
    slon thread, never by the local listen thread. Returns (fits, detail).
    """
    name = name or ""
    if row.nl_conncnt == 0:
        return name == LOCAL_LISTEN, "a conncnt 0 row is written by slon's local listen thread (%s); " \
            "this backend is %r" % (LOCAL_LISTEN, name)
    return name != LOCAL_LISTEN, "a conncnt %d row is written by registerNodeConnection() of a slon thread " \
        "other than %s; this backend is %r" % (row.nl_conncnt, LOCAL_LISTEN, name)


def _one_row_check(row, backend, others, application_name):
    """Does the backend already back another node's row (``others``: rows naming the same PID)?"""
    if not others:
        return _check("one_row_per_backend", True, "PID %d backs no other sl_nodelock row" % row.nl_backendpid)
    names = ", ".join("node %d conn %d" % o.key for o in others)
    if not application_name:
        return _check("one_row_per_backend", None, "PID %d also backs %s; which one it wrote is unknown "
                      "(application_name check off)" % (row.nl_backendpid, names))
    name = backend.get("application_name")
    mine = thread_fits(row, name)[0]
    theirs = any(thread_fits(o, name)[0] and o.nl_nodeid != row.nl_nodeid for o in others)
    if theirs and not mine:
        return _check("one_row_per_backend", False, "PID %d (%r) backs %s, which its thread writes: one backend "
                      "registers one row, so it does not own this one" % (row.nl_backendpid, name, names))
    return _check("one_row_per_backend", None if theirs == mine else True,
                  "PID %d also backs %s" % (row.nl_backendpid, names))


def judge_row(row, backend, slony_user, application_name=SLON_APPLICATION_NAME, others=()):
    # type: (NodeLock, Optional[Dict[str, Any]], str, Optional[str], Any) -> Tuple[str, List[Dict[str, Any]]]
    """Decide one row; pure. Returns (verdict, evidence).

    ``backend``: the ``pg_stat_activity`` row with pid ``row.nl_backendpid``
    (as from :func:`read_backends`) or None; ``slony_user``: the role slon
    connects as; ``application_name``: regex a slon connection's
    ``application_name`` matches (None or empty: neither it nor the slon thread
    is checked); ``others``: the other rows of the table naming the same PID.
    ``evidence``: ``{check, passed, detail}``, ``passed`` False being proof
    against the row's backend, None an unknown fact.
    """
    pid = row.nl_backendpid
    if backend is None:
        return STALE, [_check("backend_exists", False,
                              "no backend with PID %d in pg_stat_activity (kill -0 may still find a process)" % pid)]
    evidence = [_check("backend_exists", True, "PID %d is a backend (%s)" % (pid, backend.get("backend_type")))]
    evidence.append(_check("same_database", bool(backend["same_database"]),
                           "backend is connected to database %r" % backend["datname"]))
    if backend.get("backend_type") is not None:
        client = backend["backend_type"] == "client backend"
        evidence.append(_check("client_backend", client, "backend type %r" % backend["backend_type"]))
    evidence.append(_check("slony_user", backend["usename"] == slony_user,
                           "backend runs as %r, the Slony user is %r" % (backend["usename"], slony_user)))
    if application_name:
        name = backend.get("application_name") or ""
        evidence.append(_check("application_name", bool(re.search(application_name, name)),
                               "application_name %r %s /%s/ (slon names its connections slon.<thread>)" % (
                                   name, "matches" if re.search(application_name, name) else "does not match",
                                   application_name)))
        fits, detail = thread_fits(row, name)
        evidence.append(_check("slon_thread", fits, detail))
    evidence.append(_one_row_check(row, backend, [o for o in others if o.key != row.key], application_name))
    started = backend.get("backend_start")
    if row.row_written is None:
        evidence.append(_check("started_before_row", None,
                               "row time unknown (track_commit_timestamp off or xmin %s too old); backend started %s"
                               % (row.row_xmin, started)))
    elif started is None:
        evidence.append(_check("started_before_row", None, "backend_start not visible to this user"))
    else:
        before = started <= row.row_written
        evidence.append(_check("started_before_row", before, "backend started %s, row written %s%s" % (
            started.isoformat(), row.row_written.isoformat(), "" if before else ": the PID was reused")))
    if any(c["passed"] is False for c in evidence):
        return STALE, evidence
    return LIVE, evidence


def _backend_dict(backend):
    if backend is None:
        return None
    out = {k: v for k, v in backend.items() if k != "same_database"}
    if isinstance(out.get("backend_start"), datetime.datetime):
        out["backend_start"] = out["backend_start"].isoformat()
    return out


def row_report(cluster, row, verdict, evidence, backend):
    """The module's return value for one row."""
    return {
        "cluster": cluster.name, "schema": cluster.schema,
        "nl_nodeid": row.nl_nodeid, "nl_conncnt": row.nl_conncnt, "nl_backendpid": row.nl_backendpid,
        "row_xmin": row.row_xmin,
        "row_written": row.row_written.isoformat() if row.row_written else None,
        "verdict": verdict, "backend": _backend_dict(backend), "evidence": evidence,
    }


def assess(conn, clusters, slony_user=None, application_name=SLON_APPLICATION_NAME):
    """Judge every row of ``clusters``. ``slony_user`` None means each schema's owner.

    Returns a list of (cluster, row, verdict, evidence, backend).
    """
    out = []
    for cluster in clusters:
        rows = read_rows(conn, cluster)
        backends = read_backends(conn, [r.nl_backendpid for r in rows]) if rows else {}
        for row in rows:
            backend = backends.get(row.nl_backendpid)
            verdict, evidence = judge_row(row, backend, slony_user or cluster.owner, application_name,
                                          _same_pid(rows, row))
            out.append((cluster, row, verdict, evidence, backend))
    return out


def _same_pid(rows, row):
    return [r for r in rows if r.nl_backendpid == row.nl_backendpid and r.key != row.key]


BACKEND_FACTS = ("backend_start", "datname", "usename", "application_name", "backend_type")


def why_stale(evidence):
    """The failed checks of a ``stale`` verdict, for people."""
    return "; ".join(c["detail"] for c in evidence if c["passed"] is False)


def row_guard(cluster, row, backend):
    """The ``row`` guard of a ``delete_row`` step: the key, the values judged (``nl_backendpid``,
    ``row_xmin``) and the backend judged (None: no backend had the pid; else its
    :data:`BACKEND_FACTS`, ``backend_start`` a datetime or None where hidden)."""
    return Guard("row", {
        "schema": cluster.schema, "nl_nodeid": row.nl_nodeid, "nl_conncnt": row.nl_conncnt,
        "nl_backendpid": row.nl_backendpid, "row_xmin": row.row_xmin,
        "backend": None if backend is None else {k: backend.get(k) for k in BACKEND_FACTS}})


def plan(assessed):
    # type: (List[Tuple[SlonyCluster, NodeLock, str, List[Dict[str, Any]], Optional[Dict[str, Any]]]]) -> Plan
    """A ``delete_row`` step per ``stale`` row of ``assessed`` (as from :func:`assess`), a
    ``NOT_STALE`` refusal per ``live`` one; pure."""
    steps, refusals = [], []
    for cluster, row, verdict, evidence, backend in assessed:
        key = "%s.sl_nodelock node %d conn %d" % (cluster.schema, row.nl_nodeid, row.nl_conncnt)
        facts = {"key": key, "pid": row.nl_backendpid}
        if verdict == STALE:
            steps.append(Step("delete_row", key, Reason.STALE_NODELOCK_ROW, dict(facts, detail=why_stale(evidence)),
                              row_guard(cluster, row, backend)))
        else:
            unknown = "; ".join(c["detail"] for c in evidence if c["passed"] is None)
            refusals.append(Refusal(key, Reason.NOT_STALE, dict(
                facts, what="%s (PID %d)" % (key, row.nl_backendpid),
                detail="its backend passes every check" + (", unknown: " + unknown if unknown else ""))))
    return Plan(tuple(steps), tuple(refusals))
