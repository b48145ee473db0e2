#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_prepared_xacts
short_description: Find prepared transactions left on segments and roll back the orphaned ones
description:
  - Lists the prepared (two-phase commit) transactions of every primary segment, read in
    utility mode on all segments at once, each bounded by the connection's timeouts, with
    their age, gid, the distributed xid (gxid) parsed from the gid (Greenplum 6
    C(timestamp-gxid), Greenplum 7 and Cloudberry the plain gxid), the segments where the
    same gid is prepared, and the sessions that wait on its locks.
  - Decides each one as Greenplum's dtx recovery does (C(AbortOrphanedPreparedTransactions))
    an orphan is older than O(min_age) and its gxid is not in progress on the coordinator
    (no C(gp_distributed_xacts) row and no C(distributed xid) lock there). A transaction
    whose gxid the coordinator still has, such as one whose QD is in "Retry Commit
    Prepared", is V(in_progress) and never touched; it must be committed, not rolled back.
    A gxid that the segments' C(gp_distributed_log) records as committed is never rolled
    back either; where that log cannot be read (a segment down), nothing is rolled back.
  - With O(state=absent), runs C(ROLLBACK PREPARED) for the orphans only, each in a
    utility-mode connection to its segment and database, after reading the row again and
    asking the coordinator again.
  - A segment that does not answer is named in RV(unreachable_nodes); its transactions are
    not listed.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  min_age:
    description:
      - Seconds a prepared transaction must have existed to be an orphan (Greenplum's
        C(gp_dtx_recovery_prepared_period), default 120).
    type: float
    default: 120
  gids:
    description:
      - Only these gids. Default is every prepared transaction.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) reports. V(absent) rolls back the V(orphaned) ones.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Computes the same decisions and the statements it would run, and runs none.
  diff_mode:
    support: none
    description: RV(executed_queries) and RV(rolled_back) say what changed.
seealso:
  - name: Greenplum dtx recovery
    description: How Greenplum aborts orphaned prepared transactions itself.
    link: https://github.com/greenplum-db/gpdb-archive/blob/main/src/backend/cdb/cdbdtxrecovery.c
  - module: gpops.greenplum.gp_locks_info
"""

EXAMPLES = r"""
- name: Prepared transactions left on the segments, and who waits for them
  gpops.greenplum.gp_prepared_xacts:
  register: prepared

- name: Roll back the orphans older than ten minutes
  gpops.greenplum.gp_prepared_xacts:
    min_age: 600
    state: absent
  when: gp_resolve_orphaned_prepared | default(false) | bool
"""

RETURN = r"""
prepared_xacts:
  description: Every prepared transaction found on a reachable segment, with its decision.
  returned: always
  type: list
  elements: dict
  sample:
    - content: 0
      gid: "36"
      gxid: 36
      transaction: "593"
      prepared: "2026-11-21T05:42:45.361518+00:00"
      age_s: 603.2
      owner: gpadmin
      database: postgres
      verdict: orphaned
      reason: gxid 36 unknown to the coordinator, older than 120 s
      evidence: ["gxid 36 not in gp_distributed_xacts nor locked on the coordinator"]
      waiters: [{pid: 20487, mppsessionid: 43}]
      prepared_on: [0, 1]
      rolled_back: true
rolled_back:
  description: The transactions rolled back (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{content: 0, gid: "36", database: postgres}]
executed_queries:
  description: Statements run on the segments (in check mode, those that would be run).
  returned: always
  type: list
  elements: str
  sample: ["ROLLBACK PREPARED '36'"]
actions:
  description: What was done or left, one sentence per orphan.
  returned: always
  type: list
  elements: str
  sample: ["content 0: ROLLBACK PREPARED '36' (gxid 36 unknown to the coordinator, older than 120 s)"]
unreachable_nodes:
  description: Content id to the reason a node did not answer.
  returned: always
  type: dict
  sample: {"2": "timeout: no answer within 30.0 s"}
"""

try:
    import psycopg
except ImportError:  # pragma: no cover - gp_module reports the missing library
    psycopg = None

from ansible_collections.gpops.greenplum.plugins.module_utils import catalog, prepared, snapshot
from ansible_collections.gpops.greenplum.plugins.module_utils.connection import GpConnectionError, NotGreenplumError
from ansible_collections.gpops.greenplum.plugins.module_utils.module_base import gp_module, require_privileges

INCLUDE = ("locks", "edges", "dist_xacts", "prepared_xacts")


def main():
    module = gp_module(dict(
        min_age=dict(type="float", default=prepared.DEFAULT_MIN_AGE),
        gids=dict(type="list", elements="str", default=[]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ))
    p = module.params
    if p["state"] == "absent":
        require_privileges(module, ("rollback_prepared",), "state=absent")
    try:
        snap = snapshot.take_snapshot(p, include=INCLUDE)
        conn, server, segments = catalog.open_coordinator(p)
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc))
    with conn:
        if p["gids"]:
            snap.prepared_xacts = [px for px in snap.prepared_xacts if px.gid in p["gids"]]
        committed, why = prepared.read_committed(conn, {str(px.gxid) for px in snap.prepared_xacts if px.gxid})
        decisions = prepared.classify(snap, p["min_age"], committed, why)
        rolled, queries, actions, failed = [], [], [], []
        nodes = {n.content: n for n in catalog.primaries(segments)}
        for d in decisions:
            d["rolled_back"] = False
            if d["verdict"] != prepared.ORPHANED or p["state"] != "absent":
                continue
            if committed is None:  # unknown never licenses a rollback
                actions.append("content %d: left gid %s: the distributed commit log could not be read "
                               "(%s), so whether gxid %s committed is unknown"
                               % (d["content"], d["gid"], why, d["gxid"]))
                continue
            if module.check_mode:
                done, text = True, prepared.rollback_statement(d["gid"]).as_string(conn)
            else:
                try:
                    done, text = prepared.rollback(p, server, nodes[d["content"]], d, conn)
                except (GpConnectionError, psycopg.Error) as exc:
                    # The segment refused or did not answer: the step failed, the others go on.
                    failed.append("content %d: ROLLBACK PREPARED '%s' failed: %s"
                                  % (d["content"], d["gid"], " ".join(str(exc).split())[:300]))
                    actions.append(failed[-1])
                    continue
            if done:
                d["rolled_back"] = True
                rolled.append({"content": d["content"], "gid": d["gid"], "database": d["database"]})
                queries.append(text)
                actions.append("content %d: %s%s (%s)" % (d["content"], "would run " if module.check_mode else "",
                                                          text, d["reason"]))
            else:
                actions.append("content %d: left gid %s: %s" % (d["content"], d["gid"], text))
    result = dict(changed=bool(rolled), prepared_xacts=decisions, rolled_back=rolled, executed_queries=queries,
                  actions=actions, unreachable_nodes={str(c): r for c, r in snap.unreachable.items()})
    if failed:
        module.fail_json(msg="; ".join(failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
