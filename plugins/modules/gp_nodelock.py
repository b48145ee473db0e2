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
    in the evidence and never taken as proof. With O(state=absent) only V(stale) rows are deleted, in one
    transaction, each re-read C(FOR UPDATE) and re-judged first, so a slon starting
    meanwhile waits and is not hurt.
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
    description: Computes the same verdicts and the DELETE statements it would run (C(executed_queries)), and runs none.
  diff_mode:
    support: full
    description: The sl_nodelock rows before and after.
seealso:
  - name: Slony-I sl_nodelock
    description: The table and the functions that write and clean it.
    link: https://www.slony.info/documentation/2.2/table.sl-nodelock.html
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
executed_queries:
  description: The statements run (in check mode, those that would be run).
  returned: always
  type: list
  elements: str
  sample: ['DELETE FROM "_replication"."sl_nodelock" WHERE nl_nodeid = 1 AND nl_conncnt = 0 AND nl_backendpid = 31337']
actions:
  description: What was done or left, one sentence per stale row.
  returned: always
  type: list
  elements: str
  sample: ["deleted _replication.sl_nodelock row node 1 conn 0 (PID 31337): application_name 'psql' does not match /^slon\\./"]
"""

from ansible_collections.gpops.greenplum.plugins.module_utils import nodelock
from ansible_collections.gpops.greenplum.plugins.module_utils.connection import GpConnectionError, connect
from ansible_collections.gpops.greenplum.plugins.module_utils.module_base import gp_module, require_privileges

try:
    import psycopg
except ImportError:  # pragma: no cover - gp_module reports it
    psycopg = None


def _key(cluster, row):
    return {"schema": cluster.schema, "nl_nodeid": row.nl_nodeid, "nl_conncnt": row.nl_conncnt,
            "nl_backendpid": row.nl_backendpid}


def _why(evidence):
    return "; ".join(c["detail"] for c in evidence if c["passed"] is False)


def main():
    module = gp_module(dict(
        cluster_name=dict(type="str"),
        slony_user=dict(type="str"),
        slon_application_name=dict(type="str", default=nodelock.SLON_APPLICATION_NAME),
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
            clusters = nodelock.find_clusters(conn, p["cluster_name"])
            if not clusters:
                where = ("no Slony-I schema %r holding sl_nodelock" % nodelock.schema_of(p["cluster_name"])
                         if p["cluster_name"] else "no Slony-I cluster schema (_<cluster> holding sl_nodelock)")
                module.fail_json(msg="cluster_name: %s in database %r; nothing removed" % (where, conn.info.dbname),
                                 rows=[], clusters=[], removed=[], executed_queries=[], actions=[])
            assessed = nodelock.assess(conn, clusters, user, app)
            rows = [nodelock.row_report(c, r, v, e, b) for c, r, v, e, b in assessed]
            stale = [(c, r, e) for c, r, v, e, _b in assessed if v == nodelock.STALE]
            removed, queries, actions = [], [], []
            if p["state"] == "absent" and stale:
                if module.check_mode:
                    for cluster, row, evidence in stale:
                        params = (row.nl_nodeid, row.nl_conncnt, row.nl_backendpid)
                        queries.append(nodelock.render(conn, nodelock.delete_statement(cluster), params))
                        removed.append(_key(cluster, row))
                        actions.append("would delete %s.sl_nodelock row node %d conn %d (PID %d): %s" % (
                            cluster.schema, row.nl_nodeid, row.nl_conncnt, row.nl_backendpid, _why(evidence)))
                else:
                    why = {(c.schema, r.key): e for c, r, e in stale}
                    deleted, skipped = nodelock.delete_stale(conn, [(c, r) for c, r, _e in stale], user, app)
                    for cluster, row, text in deleted:
                        queries.append(text)
                        removed.append(_key(cluster, row))
                        actions.append("deleted %s.sl_nodelock row node %d conn %d (PID %d): %s" % (
                            cluster.schema, row.nl_nodeid, row.nl_conncnt, row.nl_backendpid,
                            _why(why[(cluster.schema, row.key)])))
                    for cluster, row, reason in skipped:
                        actions.append("left %s.sl_nodelock row node %d conn %d (PID %d): %s" % (
                            cluster.schema, row.nl_nodeid, row.nl_conncnt, row.nl_backendpid, reason))
        except psycopg.Error as exc:
            module.fail_json(msg="reading or deleting sl_nodelock rows failed, nothing removed: %s"
                             % " ".join(str(exc).split()))
    gone = {(k["schema"], k["nl_nodeid"], k["nl_conncnt"]) for k in removed}
    for entry in rows:
        entry["removed"] = (entry["schema"], entry["nl_nodeid"], entry["nl_conncnt"]) in gone
    brief = ["%s node %d conn %d PID %d" % (r["schema"], r["nl_nodeid"], r["nl_conncnt"], r["nl_backendpid"])
             for r in rows]
    module.exit_json(
        changed=bool(removed), rows=rows, removed=removed, executed_queries=queries, actions=actions,
        clusters=[{"cluster": c.name, "schema": c.schema, "owner": c.owner} for c in clusters],
        diff=dict(before="\n".join(brief) + "\n",
                  after="\n".join(b for b, r in zip(brief, rows) if not r["removed"]) + "\n"))


if __name__ == "__main__":
    main()
