#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_nodelock
short_description: Find and remove stale Slony-I node locks (sl_nodelock), by backend identity
description:
  - Reads the C(sl_nodelock) rows of every Slony-I cluster schema (C(_<cluster>)) of the
    connected database, or of the one named by O(cluster_name), and decides for each row
    whether the backend it names (C(nl_backendpid)) is really the slon connection that
    wrote it.
  - Slony-I's own C(cleanupNodelock()) keeps a row while any process of the server's OS
    user has that PID (C(kill -0)); after PID reuse slon then fails for ever with
    C(duplicate key value violates unique constraint "sl_nodelock-pkey").
  - A row is V(live) only if a backend with that PID is in C(pg_stat_activity) of this
    database, is a client backend, runs as O(slony_user), has a slon C(application_name)
    (O(slon_application_name)) of the thread that writes such a row (C(slon_thread) - a
    row with C(nl_conncnt) 0 is written only by slon's local listen thread,
    C(slon.local_listen); any other row by C(registerNodeConnection()) of another slon
    thread), does not back another node's row that its thread fits
    (C(one_row_per_backend) - one backend registers one row, so a backend of node 2's slon
    does not own node 1's row), and started no later than the row was written. The row's
    time is its commit time when C(track_commit_timestamp) is on; otherwise it is
    reported as unknown and identity rests on the other facts.
  - What keeps a row live is its backend passing all of these; what makes it V(stale) is
    one of them proven false (no such backend, another database or user, another
    program or slon thread, a backend that belongs to another node's row, a backend
    started after the row). Only the row itself is removed; nothing else is removed with
    it (slon writes it again when it starts).
  - A row is V(stale) when one of those facts is proven false; an unknown fact is stated
    in the evidence and never taken as proof.
  - Builds a plan (RV(plan)) - one C(delete_row) step (reason code C(stale_nodelock_row)) per V(stale)
    row, guarded by the row's key and every value judged (C(nl_backendpid), the row version C(xmin),
    and the backend with that PID as it was judged - whether one existed, its C(backend_start),
    database, user, C(application_name) and backend type); a refusal C(not_stale) per V(live) row.
  - With O(state=absent) the collection's one executor runs each step as one C(DELETE) whose C(WHERE)
    is the guard (read in the same statement); a row that changed since it was judged (rewritten,
    another backend) is not deleted and RV(outcomes) says C(skipped) with the failed guard's reason
    code. A slon starting meanwhile waits on the row until the C(DELETE) commits and is not hurt
    (docs/safety.md).
  - A missing Slony-I schema fails the module; nothing is removed.
version_added: 0.1.0
author: gpops.greenplum contributors (@gpops)
extends_documentation_fragment:
  - gpops.greenplum.connection
options:
  cluster_name:
    description:
      - Slony-I cluster name (as in slonik's C(cluster name = ...)); its schema is
        C(_<cluster_name>). Default is every schema named C(_*) that holds C(sl_nodelock).
    type: str
  slony_user:
    description:
      - The database role slon connects as. Default is the owner of the cluster's schema
        (the role slonik ran C(init cluster) as).
    type: str
  slon_application_name:
    description:
      - Regular expression that a slon connection's C(application_name) matches (slon sets
        C(slon.<thread>), e.g. C(slon.local_listen)). An empty string turns this check and
        the slon thread check off (for slon versions before 2.0, which set none); a PID
        that backs rows of two nodes is then reported as unknown, never as proof.
    type: str
    default: ^slon\.
  state:
    description:
      - V(present) reports. V(absent) deletes the rows proven stale.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    support: full
    description: Returns the same plan and the DELETE statements it would run (C(executed_queries)), and runs none.
  diff_mode:
    support: full
    description: The sl_nodelock rows before and after.
seealso:
  - name: Slony-I sl_nodelock
    description: The table and the functions that write and clean it.
    link: https://www.slony.info/documentation/2.2/table.sl-slony_nodelock.html
  - module: gpops.greenplum.gp_pidfile
"""

EXAMPLES = r"""
- name: Why does slon not start?
  gpops.greenplum.gp_nodelock:
    login_host: db1
    login_db: app
    cluster_name: replication
  register: nodelock

- name: Remove only the rows proven stale
  gpops.greenplum.gp_nodelock:
    login_host: db1
    login_db: app
    cluster_name: replication
    slony_user: slony
    state: absent
"""

RETURN = r"""
rows:
  description: Every sl_nodelock row found, with its verdict and the evidence.
  returned: always
  type: list
  elements: dict
  sample:
    - cluster: replication
      schema: _replication
      nl_nodeid: 1
      nl_conncnt: 0
      nl_backendpid: 31337
      row_xmin: "745"
      row_written: null
      verdict: stale
      reason: stale_nodelock_row
      why: "application_name 'psql' does not match /^slon\\./ (slon names its connections slon.<thread>)"
      result: done
      backend: {pid: 31337, datname: app, usename: postgres, application_name: psql,
                backend_start: "2026-11-21T07:30:00+00:00", backend_type: client backend,
                state: idle, client_addr: 127.0.0.1, client_port: 50522}
      evidence:
        - {check: backend_exists, passed: true, detail: "PID 31337 is a backend (client backend)"}
        - {check: application_name, passed: false,
           detail: "application_name 'psql' does not match /^slon\\./ (slon names its connections slon.<thread>)"}
      removed: true
clusters:
  description: The Slony-I cluster schemas examined.
  returned: always
  type: list
  elements: dict
  sample: [{cluster: replication, schema: _replication, owner: slony}]
removed:
  description: Rows deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{schema: _replication, nl_nodeid: 1, nl_conncnt: 0, nl_backendpid: 31337}]
plan:
  description:
    - The plan, the same in check mode - C(steps) (C(action) delete_row, C(target), C(reason)
      stale_nodelock_row, C(why), C(facts), C(guard) of kind row with C(schema), C(nl_nodeid),
      C(nl_conncnt), C(nl_backendpid), C(row_xmin), C(backend)) and C(refusals) (reason not_stale).
  returned: always
  type: dict
  sample:
    steps:
      - action: delete_row
        target: _replication.sl_nodelock node 1 conn 0
        reason: stale_nodelock_row
        why: "sl_nodelock row _replication.sl_nodelock node 1 conn 0 names backend pid 31337, which is not the slon that wrote it"
        facts: {key: _replication.sl_nodelock node 1 conn 0, pid: 31337, detail: "application_name 'psql' does not match /^slon\\./"}
        guard: {kind: row, schema: _replication, nl_nodeid: 1, nl_conncnt: 0, nl_backendpid: 31337, row_xmin: "745",
                backend: {backend_start: "2026-11-21T07:30:00+00:00", datname: app, usename: postgres,
                          application_name: psql, backend_type: client backend}}
    refusals: []
outcomes:
  description:
    - One per step run (empty with O(state=present)) - the step's keys, then C(result) (done,
      skipped, failed, or planned in check mode), C(detail), C(guard_failed) (reason code of a failed
      guard - guard_row_changed, guard_nodelock_backend_changed - else null), C(statement), C(at).
  returned: always
  type: list
  elements: dict
  sample:
    - action: delete_row
      target: _replication.sl_nodelock node 1 conn 0
      result: skipped
      detail: "guard failed: the row _replication.sl_nodelock node 1 conn 0 no longer holds the values judged"
      guard_failed: guard_row_changed
executed_queries:
  description: The statements run (in check mode, those that would be run), values bound.
  returned: always
  type: list
  elements: str
  sample: ['DELETE FROM "_replication"."sl_nodelock" l WHERE l.nl_nodeid = 1 AND l.nl_conncnt = 0 AND l.nl_backendpid = 31337 AND ...']
actions:
  description: What was done or left, one sentence per step.
  returned: always
  type: list
  elements: str
  sample: ["deleted _replication.sl_nodelock node 1 conn 0 (PID 31337): application_name 'psql' does not match /^slon\\./"]
"""

from ansible_collections.gpops.greenplum.plugins.module_utils.act.executor import execute
from ansible_collections.gpops.greenplum.plugins.module_utils.act.nodelock_row_deleter import RowDeleter
from ansible_collections.gpops.greenplum.plugins.module_utils.plan import slony_nodelock
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import GpConnectionError, connect
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module, require_privileges

try:
    import psycopg
except ImportError:  # pragma: no cover - gp_module reports it
    psycopg = None


def _key(guard):
    g = guard.facts
    return {"schema": g["schema"], "nl_nodeid": g["nl_nodeid"], "nl_conncnt": g["nl_conncnt"],
            "nl_backendpid": g["nl_backendpid"]}


def _sentence(outcome):
    step = outcome.step
    head = "%s (PID %d)" % (step.target, step.guard.facts["nl_backendpid"])
    if outcome.result == "planned":
        return "would delete %s: %s" % (head, step.facts["detail"])
    if outcome.result == "done":
        return "deleted %s: %s" % (head, step.facts["detail"])
    return "left %s: %s" % (head, outcome.detail)


def main():
    module = gp_module(dict(
        cluster_name=dict(type="str"),
        slony_user=dict(type="str"),
        slon_application_name=dict(type="str", default=slony_nodelock.SLON_APPLICATION_NAME),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ))
    p = module.params
    user, app = p["slony_user"], p["slon_application_name"] or None
    # slon's sessions belong to another role: unseen, a live slon would look gone.
    require_privileges(module, ("see_sessions",), "gp_nodelock")
    try:
        conn = connect(p)
    except GpConnectionError as exc:
        module.fail_json(msg=str(exc), node=exc.node)
    with conn:
        try:
            clusters = slony_nodelock.find_clusters(conn, p["cluster_name"])
            if not clusters:
                where = ("no Slony-I schema %r holding sl_nodelock" % slony_nodelock.schema_of(p["cluster_name"])
                         if p["cluster_name"] else "no Slony-I cluster schema (_<cluster> holding sl_nodelock)")
                module.fail_json(msg="cluster_name: %s in database %r; nothing removed" % (where, conn.info.dbname),
                                 rows=[], clusters=[], removed=[], executed_queries=[], actions=[],
                                 plan={"steps": [], "refusals": []}, outcomes=[])
            assessed = slony_nodelock.assess(conn, clusters, user, app)
            the_plan = slony_nodelock.plan(assessed)
            deleter = RowDeleter(conn)
            outcomes = []
            if p["state"] == "absent":
                outcomes = execute(the_plan.steps, deleter.runners(), module.check_mode)
            statements = [o.statement or deleter.statement(o.step) for o in outcomes]
        except psycopg.Error as exc:
            module.fail_json(msg="reading sl_nodelock rows failed, nothing removed: %s" % " ".join(str(exc).split()))
    rows = [slony_nodelock.row_report(c, r, v, e, b) for c, r, v, e, b in assessed]
    by_key = {(o.step.guard.facts["schema"], o.step.guard.facts["nl_nodeid"], o.step.guard.facts["nl_conncnt"]): o
              for o in outcomes}
    for entry in rows:
        stale = entry["verdict"] == slony_nodelock.STALE
        entry["reason"] = "stale_nodelock_row" if stale else "not_stale"
        entry["why"] = (slony_nodelock.why_stale(entry["evidence"]) if stale
                        else "its backend passes every check of a slon that wrote the row")
        o = by_key.get((entry["schema"], entry["nl_nodeid"], entry["nl_conncnt"]))
        entry["result"] = o.result if o else None
        entry["removed"] = bool(o and o.result in ("done", "planned"))
    acted = [(o, text) for o, text in zip(outcomes, statements) if o.result in ("done", "planned")]
    failed = ["%s: %s" % (o.step.target, o.detail) for o in outcomes if o.result == "failed"]
    brief = ["%s node %d conn %d PID %d" % (r["schema"], r["nl_nodeid"], r["nl_conncnt"], r["nl_backendpid"])
             for r in rows]
    result = dict(
        changed=bool(acted), rows=rows, removed=[_key(o.step.guard) for o, _t in acted],
        executed_queries=[text for _o, text in acted], actions=[_sentence(o) for o in outcomes],
        plan=the_plan.as_dicts(), outcomes=[o.as_dict() for o in outcomes],
        clusters=[{"cluster": c.name, "schema": c.schema, "owner": c.owner} for c in clusters],
        diff=dict(before="\n".join(brief) + "\n",
                  after="\n".join(b for b, r in zip(brief, rows) if not r["removed"]) + "\n"))
    if failed:
        module.fail_json(msg="deleting sl_nodelock rows failed: %s" % "; ".join(failed), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
