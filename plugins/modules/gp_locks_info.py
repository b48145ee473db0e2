#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gp_locks_info
short_description: One cluster-wide snapshot of Greenplum locks, wait-for edges and sessions, analysed
description:
  - Takes one snapshot of the whole cluster, coordinator and every primary, and says what hangs
    and why, with Greenplum's own view of the wait-for graph.
  - First one dispatched query each on the coordinator for C(pg_locks), C(gp_dist_wait_status()),
    C(gp_stat_activity) (Greenplum 7, Cloudberry; per-node C(pg_stat_activity) on Greenplum 6)
    and C(gp_distributed_xacts). When they fail or time out, because a segment is down or hung,
    the same facts are read from every node in utility mode, in parallel.
  - Per node, in utility mode, relation names are looked up in that node's catalog (OIDs differ
    between nodes), C(pg_blocking_pids()) is read for its waiting backends (lock-queue waiters
    have no C(gp_dist_wait_status()) edge) and C(pg_prepared_xacts) for its prepared transactions.
  - A node that does not answer within O(statement_timeout) is abandoned and named in
    RV(unreachable_nodes); the module never hangs on it.
  - The analysis (global wait-for graph reduced with the rules of Greenplum's global deadlock
    detector, cycles, victims Greenplum would cancel, blocking trees) always covers the whole
    snapshot; the filters only narrow RV(locks), RV(edges) and RV(backends).
  - Read-only; only read-only statements run, each session with a short C(lock_timeout).
version_added: "0.1.0"
author:
  - gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
    description: The module changes nothing.
options:
  waiting_only:
    description:
      - Only lock requests not granted, and the wait edges and backends of their sessions
        (with each session's coordinator backend).
    type: bool
    default: false
  relation:
    description:
      - Only locks on this relation, as C(schema.name), or a bare name in any schema; and the wait
        edges and backends of the sessions holding or waiting for them.
    type: str
  session:
    description:
      - Only this distributed session (C(sess_id) = C(mppsessionid) = C(gp_session_id)).
    type: int
  content:
    description:
      - Only these nodes, by content id (-1 is the coordinator).
    type: list
    elements: int
seealso:
  - name: pg_locks (Greenplum 7)
    description: The lock view, with C(gp_segment_id), C(mppsessionid) and C(mppiswriter).
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-system_catalogs-pg_locks.html
  - name: Global deadlock detector
    description: How Greenplum finds and breaks global deadlocks.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-dml.html
  - name: gp_stat_activity
    description: Cluster-wide session activity.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-system_catalogs-catalog_ref-views.html
  - module: gpops.greenplum.gp_deadlock
  - module: gpops.greenplum.gp_segment_info
'''

EXAMPLES = r'''
- name: What hangs, and why
  gpops.greenplum.gp_locks_info:
    waiting_only: true
  register: locks

- name: Show the verdict
  ansible.builtin.debug:
    msg: "{{ locks.analysis.summary }}"

- name: Locks on one table, on segments 0 and 1 only
  gpops.greenplum.gp_locks_info:
    relation: public.orders
    content: [0, 1]

- name: Everything one session holds or waits for, with a short budget per node
  gpops.greenplum.gp_locks_info:
    session: 1234
    statement_timeout: 5
'''

RETURN = r'''
server:
  description: Flavor and version of the coordinator (see M(gpops.greenplum.gp_segment_info)).
  returned: success
  type: dict
  sample: {flavor: greenplum, major: 7, version: 7.0.0, version_num: 70000, pg_version: "12.12"}
taken_at:
  description: When collection started (UTC, ISO 8601).
  returned: success
  type: str
  sample: "2026-11-21T05:41:25.704690+00:00"
source:
  description: C(dispatch) (one dispatched query on the coordinator) or C(utility) (the dispatched
    queries failed or timed out; read per node in utility mode).
  returned: success
  type: str
  sample: dispatch
unreachable_nodes:
  description: Content id (as a string) of each node that did not answer, and why. (Not
    C(unreachable), a key Ansible reserves for hosts it cannot reach.) Their rows are
    missing; a quiet result is then not a healthy one.
  returned: success
  type: dict
  sample: {"1": "timeout: no answer within 15.0 s"}
locks:
  description: C(pg_locks) rows of every node, filtered. C(content) is the node, C(pid) the pid on
    that node (null for a prepared transaction), C(relation_name) the C(schema.name) of
    C(relation) in that node's catalog.
  returned: success
  type: list
  elements: dict
  sample:
    - {content: 0, pid: 19892, mppsessionid: 11, mppiswriter: true, locktype: transactionid,
       mode: ShareLock, granted: false, database: 13991, relation: null, transactionid: "576",
       relation_name: null, waitstart: null}
edges:
  description: C(gp_dist_wait_status()) rows, filtered. On node C(content) distributed transaction
    C(waiter_gxid) waits for C(holder_gxid); C(solid) is C(holdTillEndXact).
  returned: success
  type: list
  elements: dict
  sample:
    - {content: 0, waiter_gxid: 18, holder_gxid: 17, solid: true, waiter_pid: 19892,
       holder_pid: 19887, waiter_lockmode: ShareLock, waiter_locktype: transactionid,
       waiter_sessionid: 11, holder_sessionid: 10}
backends:
  description: Sessions (C(gp_stat_activity) / C(pg_stat_activity) rows) of every node, filtered;
    C(blocking_pids) is C(pg_blocking_pids()) on that node for waiting backends.
  returned: success
  type: list
  elements: dict
  sample:
    - {content: -1, pid: 19885, sess_id: 11, usename: gpadmin, application_name: psql,
       state: active, wait_event_type: IPC, wait_event: Dispatch/Result,
       backend_start: "2026-11-21T05:41:20.690194+00:00", query: "UPDATE t01 SET val=val WHERE id=2",
       blocking_pids: null}
prepared_xacts:
  description: Prepared transactions (C(pg_prepared_xacts)) per node.
  returned: success
  type: list
  elements: dict
  sample: [{content: 0, transaction: "600", gid: "36", prepared: "2026-11-21T05:41:00+00:00",
            owner: gpadmin, database: postgres}]
analysis:
  description:
    - The analysis of the whole (unfiltered) snapshot. C(verdict) is C(deadlock), C(blocking) or
      C(none); C(summary) one line of text; C(deadlocks) the cycles left after Greenplum's
      reduction rules, each with its sessions, edges and explanation; C(victims) the transaction
      Greenplum's policy would cancel per cycle (youngest gxid); C(blocking_trees) root blockers
      with their waiters; C(notes) what may be missing or needs care.
  returned: success
  type: dict
  sample:
    verdict: deadlock
    summary: "1 global deadlock; victim: gxid 18 (session 11, coordinator pid 19885)"
    complete: true
    deadlocks: [{id: 1, gxids: [17, 18], resolution: victim}]
    victims: [{gxid: 18, sess_id: 11, coordinator_pid: 19885, policy: youngest, deadlock: 1}]
    blocking_trees: []
    notes: []
'''

from ansible_collections.gpops.greenplum.plugins.module_utils.analyse.lock_analysis import analyse
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.snapshot import (
    filter_records, take_snapshot)


def main():
    module = gp_module(dict(
        waiting_only=dict(type="bool", default=False),
        relation=dict(type="str"),
        session=dict(type="int"),
        content=dict(type="list", elements="int"),
    ))
    p = module.params
    try:
        snapshot = take_snapshot(p)
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc))
    picked = filter_records(snapshot, waiting_only=p["waiting_only"], relation=p["relation"],
                            session=p["session"], content=p["content"])
    whole = snapshot.as_dict()
    module.exit_json(
        changed=False, server=whole["server"], taken_at=whole["taken_at"], source=whole["source"],
        unreachable_nodes=whole["unreachable"], prepared_xacts=whole["prepared_xacts"],
        analysis=analyse(snapshot).as_dict(),
        **{name: [r.as_dict() for r in records] for name, records in picked.items()})


if __name__ == "__main__":
    main()
