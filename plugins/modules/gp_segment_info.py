#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gp_segment_info
short_description: Topology, health and version of a Greenplum or Cloudberry cluster
description:
  - Reads C(gp_segment_configuration) on the coordinator and reports every node (coordinator,
    standby coordinator, primaries, mirrors), which are up and in sync, which pairs have failed
    over, and what the server is (flavor and version).
  - Read-only. Nothing is dispatched to the segments.
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
options: {}
seealso:
  - name: gp_segment_configuration
    description: The Greenplum catalog table this module reads.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/ref_guide-system_catalogs-gp_segment_configuration.html
  - name: Recovering from segment failures
    description: What to do when a segment is down or a pair has failed over (gprecoverseg).
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-highavail-topics-g-recovering-from-segment-failures.html
  - module: gpops.greenplum.gp_locks_info
'''

EXAMPLES = r'''
- name: Read the topology (connection from the PG* environment variables)
  gpops.greenplum.gp_segment_info:
  register: topo

- name: Stop when a primary or mirror is down
  ansible.builtin.assert:
    that: topo.summary.healthy
    fail_msg: "down: {{ topo.summary.mirrors_down }}, not in sync: {{ topo.summary.not_in_sync }}"

- name: Connect explicitly
  gpops.greenplum.gp_segment_info:
    login_host: mdw
    login_port: 5432
    login_user: gpadmin
    login_db: postgres
    connect_timeout: 3
'''

RETURN = r'''
server:
  description: What the coordinator says it is.
  returned: success
  type: dict
  sample:
    flavor: greenplum
    major: 7
    version: 7.0.0-beta.0+d766805
    version_num: 70000
    pg_version: "12.12"
    version_string: PostgreSQL 12.12 (Greenplum Database 7.0.0-beta.0+d766805 build dev) on x86_64-pc-linux-gnu, ...
segments:
  description: Every row of C(gp_segment_configuration), ordered by content and dbid.
  returned: success
  type: list
  elements: dict
  sample:
    - {dbid: 1, content: -1, role: p, preferred_role: p, mode: n, status: u, port: 7000,
       hostname: mdw, address: mdw, datadir: /data/coordinator/gpseg-1}
    - {dbid: 2, content: 0, role: p, preferred_role: p, mode: s, status: u, port: 7002,
       hostname: sdw1, address: sdw1, datadir: /data/primary/gpseg0}
    - {dbid: 5, content: 0, role: m, preferred_role: m, mode: s, status: u, port: 7005,
       hostname: sdw2, address: sdw2, datadir: /data/mirror/gpseg0}
summary:
  description:
    - Health at a glance. C(primaries_down), C(mirrors_down), C(not_in_sync) and C(failed_over)
      list content ids; C(standby) is null without a standby coordinator; C(healthy) is true
      when every node is up, every pair in sync and in its preferred role.
  returned: success
  type: dict
  sample:
    segment_count: 3
    primaries_up: 3
    primaries_down: []
    mirrored: true
    mirrors_up: 2
    mirrors_down: [0]
    not_in_sync: [0]
    failed_over: []
    standby: {dbid: 8, status: u, in_sync: true}
    healthy: false
'''

from ansible_collections.gpops.greenplum.plugins.module_utils.collect import topology
from ansible_collections.gpops.greenplum.plugins.module_utils.collect.connection import (
    GpConnectionError, NotGreenplumError)
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import gp_module


def main():
    module = gp_module({})
    try:
        conn, server, segments = topology.open_coordinator(module.params)
    except (GpConnectionError, NotGreenplumError) as exc:
        module.fail_json(msg=str(exc))
    conn.close()
    module.exit_json(changed=False, server=server.as_dict(),
                     segments=[s.as_dict() for s in segments], summary=topology.summary(segments))


if __name__ == "__main__":
    main()
