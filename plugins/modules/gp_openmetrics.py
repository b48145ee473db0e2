#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: gp_openmetrics
short_description: Publish a health check's findings as OpenMetrics text for node_exporter
description:
  - Writes one file per cluster, C(<dest>/gpops_<cluster>.prom), for node_exporter's textfile
    collector (C(--collector.textfile.directory)), so that Prometheus and Grafana see the
    findings of M(gpops.greenplum.gp_hang_info) by class and severity, the sessions waiting, the
    longest wait, the segments down or not in sync and the global deadlock detector's state; with
    O(log_info), also the log events and incident chains of M(gpops.greenplum.gp_log_info).
  - The file is replaced atomically (written aside, then renamed), so the collector never reads
    half a file. The text depends only on the input (its time is the snapshot's), so writing the
    same result again changes nothing.
  - Does not connect to the cluster.
version_added: 0.2.0
author: gpops.greenplum contributors (@gpops)
options:
  hang_info:
    description: The registered result of M(gpops.greenplum.gp_hang_info).
    type: dict
    required: true
  log_info:
    description: The registered result of M(gpops.greenplum.gp_log_info) (optional).
    type: dict
  cluster:
    description: The cluster's name, in the C(cluster) label and the file name.
    type: str
    default: cluster
  dest:
    description: The textfile collector's directory; created (mode 0755) when missing.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: Says whether the file would change and writes nothing.
  diff_mode:
    support: none
    description: No diff is shown.
seealso:
  - name: node_exporter textfile collector
    description: How node_exporter reads C(*.prom) files from a directory.
    link: https://github.com/prometheus/node_exporter#textfile-collector
"""

EXAMPLES = r"""
- name: Findings as metrics for node_exporter
  gpops.greenplum.gp_openmetrics:
    hang_info: "{{ gp_health }}"
    log_info: "{{ gp_timeline }}"
    cluster: "{{ inventory_hostname }}"
    dest: /var/lib/node_exporter/textfile_collector
"""

RETURN = r"""
path:
  description: The file written (or that would be).
  returned: always
  type: str
  sample: /var/lib/node_exporter/textfile_collector/gpops_mdw.prom
metrics:
  description: The OpenMetrics text.
  returned: always
  type: str
  sample: "# HELP gpops_up 1 when the coordinator answered the health check.\n# TYPE gpops_up gauge\ngpops_up{cluster=\"mdw\"} 1\n# EOF\n"
"""

import os
import tempfile

from ansible_collections.gpops.greenplum.plugins.module_utils.report import openmetrics
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import local_module


def main():
    module = local_module(dict(
        hang_info=dict(type="dict", required=True),
        log_info=dict(type="dict"),
        cluster=dict(type="str", default="cluster"),
        dest=dict(type="path", required=True),
    ))
    p = module.params
    if "findings" not in p["hang_info"]:
        module.fail_json(msg="hang_info must be a registered gp_hang_info result (with findings); got keys %s"
                             % ", ".join(sorted(p["hang_info"])))
    text = openmetrics.render(p["hang_info"], p["cluster"], p["log_info"])
    path = os.path.join(p["dest"], openmetrics.file_name(p["cluster"]))
    try:
        with open(path) as handle:
            old = handle.read()
    except (IOError, OSError):
        old = None
    changed = old != text
    if changed and not module.check_mode:
        try:
            if not os.path.isdir(p["dest"]):
                os.makedirs(p["dest"], 0o755)
            fd, tmp = tempfile.mkstemp(dir=p["dest"], prefix=".gpops-", suffix=".tmp")
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write %s: %s" % (path, exc.strerror or exc))
    module.exit_json(changed=changed, path=path, metrics=text)


if __name__ == "__main__":
    main()
