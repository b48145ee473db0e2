# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster topology from ``gp_segment_configuration``
(docs/greenplum-internals.md#segment-configuration-and-fts).

Public API:

- ``segment_configuration(conn) -> list[SegmentConfig]`` (read on the coordinator;
  a coordinator catalog table, nothing is dispatched).
- ``coordinator(segments)``, ``standby(segments)``: the content -1 rows (role ``p`` /
  ``m``), or None.
- ``primaries(segments)``, ``mirrors(segments)``: content >= 0 rows by current role,
  ordered by content.
- ``pairs(segments) -> {content: (primary, mirror or None)}``.
- ``summary(segments) -> dict``: up/down, in sync, failed over, healthy.
- ``open_coordinator(params, server=None, timeout=None) -> (conn, ServerInfo, segments)``:
  connect to the coordinator, detect the server, read the topology, all within
  ``timeout`` seconds (client-side deadline). Raises ``GpConnectionError``,
  ``NotGreenplumError``.

Facts used: content -1 is the coordinator (``p``) and its standby (``m``); ``mode``
``s``/``n`` is set on both members of a pair; FTS never marks a primary down, it
flips roles and marks the old primary ``d``; ``role != preferred_role`` means the pair
has failed over (``gprecoverseg -r`` rebalances).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import sql
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    call_with_deadline, connect, describe_node, query, server_info)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.records import (
    COORDINATOR_CONTENT, SegmentConfig)


def segments_from_rows(rows):
    """``gp_segment_configuration`` rows (dicts) -> ``SegmentConfig`` records, by content."""
    return sorted((SegmentConfig.from_row(r) for r in rows), key=lambda s: (s.content, s.dbid))


def segment_configuration(conn):
    """Read the topology on the coordinator connection ``conn``."""
    return segments_from_rows(query(conn, sql.SEGMENT_CONFIGURATION))


def _one(segments, content, role):
    return next((s for s in segments if s.content == content and s.role == role), None)


def coordinator(segments):
    return _one(segments, COORDINATOR_CONTENT, "p")


def standby(segments):
    return _one(segments, COORDINATOR_CONTENT, "m")


def primaries(segments):
    return [s for s in segments if s.content >= 0 and s.role == "p"]


def mirrors(segments):
    return [s for s in segments if s.content >= 0 and s.role == "m"]


def pairs(segments):
    """``{content: (primary, mirror)}`` for every segment content; mirror None when
    the cluster is mirrorless."""
    return {p.content: (p, _one(segments, p.content, "m")) for p in primaries(segments)}


def summary(segments):
    """What a DBA asks first about the topology.

    Returns ``segment_count`` (contents), ``primaries_up``, ``primaries_down``
    (contents), ``mirrored``, ``mirrors_up``, ``mirrors_down``, ``not_in_sync``
    (contents whose pair is not in sync), ``failed_over`` (contents whose roles
    differ from the preferred ones), ``standby`` (None or ``{dbid, status, in_sync}``)
    and ``healthy`` (all up, in sync, in preferred roles).
    """
    by_content = pairs(segments)
    prims = [p for p, _m in by_content.values()]
    mirs = [m for _p, m in by_content.values() if m is not None]
    standby_row = standby(segments)
    out = dict(
        segment_count=len(by_content),
        primaries_up=sum(1 for p in prims if p.is_up),
        primaries_down=[p.content for p in prims if not p.is_up],
        mirrored=bool(mirs),
        mirrors_up=sum(1 for m in mirs if m.is_up),
        mirrors_down=[m.content for m in mirs if not m.is_up],
        not_in_sync=[c for c, (p, m) in sorted(by_content.items())
                     if m is not None and (p.mode != "s" or m.mode != "s")],
        failed_over=sorted({s.content for s in segments if s.role != s.preferred_role}),
        standby=None if standby_row is None else dict(
            dbid=standby_row.dbid, status=standby_row.status, in_sync=standby_row.mode == "s"),
    )
    out["healthy"] = not (out["primaries_down"] or out["mirrors_down"] or out["not_in_sync"]
                          or out["failed_over"]) and (standby_row is None or standby_row.is_up)
    return out


def open_coordinator(params, server=None, timeout=None):
    """Connect to the coordinator, read ``server_info`` (unless given) and the topology.

    ``timeout``: seconds for all of it (default: the ``statement_timeout`` option),
    enforced on the client side too, since a stopped coordinator never answers.
    Returns ``(conn, server, segments)``; the caller closes ``conn``. Raises
    ``GpConnectionError`` (the coordinator named, with the cause) or
    ``NotGreenplumError``.
    """
    timeout = float(timeout or params.get("statement_timeout") or 30.0)

    def open_():
        conn = connect(params, statement_timeout=timeout)
        try:
            return conn, server or server_info(conn), segment_configuration(conn)
        except Exception:
            conn.close()
            raise

    return call_with_deadline(open_, timeout, describe_node(
        None, params.get("login_host"), params.get("login_port")))
