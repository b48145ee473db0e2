#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: gpops.greenplum contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: gp_report
short_description: Write a hang report (JSON and Markdown) from a gp_hang_info result
description:
  - Writes two files under O(dest) on the managed node, named after the cluster and the time of
    the snapshot (C(gp-hang-<cluster>-<YYYYmmddTHHMMSS>.json) and C(.md)).
  - The JSON report has a stable, versioned schema (C(schema_version)). It holds the findings, the
    wait-for graph, what was done (O(actions)), what was left (O(after)) and, as evidence, the raw
    snapshot, facts and analysis that the diagnosis used.
  - The Markdown report is for people, rendered from the JSON report only. It says what hung, why
    (with evidence), shows the wait-for graph as a Mermaid C(flowchart LR) with deadlock cycles,
    root blockers and victims marked, and says what was done and what is left.
  - Call it right after M(gpops.greenplum.gp_hang_info), before any action, so that the snapshot
    is saved first; call it again after the actions with O(actions) and O(after) to complete the
    same files.
  - Does not connect to the cluster. Idempotent; a second run with the same input changes
    nothing.
version_added: "0.1.0"
author:
  - gpops.greenplum contributors (@gpops)
attributes:
  check_mode:
    support: full
    description: Reports whether the files would change and writes nothing.
  diff_mode:
    support: full
    description: Shows the Markdown report before and after.
options:
  hang_info:
    description:
      - The registered result of M(gpops.greenplum.gp_hang_info) (needs C(findings) and
        C(snapshot); C(analysis) and C(facts) are used when present).
      - Required unless O(log_info) is given alone, which writes a timeline report
        (C(gp-timeline-<cluster>-<window end>.json) and C(.md)), as C(playbooks/postmortem.yml) does.
    type: dict
  log_info:
    description:
      - The registered result of M(gpops.greenplum.gp_log_info). Its events and chains become the
        C(timeline) of the report and its Markdown section C(Timeline), next to the wait-for graph.
    type: dict
    version_added: "0.2.0"
  dest:
    description:
      - Directory to write the reports into; created (mode 0750) when missing.
      - Checked before anything is read or written (also in check mode) -- a path that is not a directory,
        or a directory this user cannot write or create, fails with a message naming O(dest).
    type: path
    required: true
  cluster:
    description:
      - Name of the cluster in the report and in the file names, for example the inventory host.
    type: str
    default: cluster
  actions:
    description:
      - What was done, as the acting modules return it (each item a dict; C(action), C(target),
        C(changed) and C(result) are shown when present), or a sentence (as M(gpops.greenplum.gp_pidfile),
        M(gpops.greenplum.gp_nodelock) and M(gpops.greenplum.gp_prepared_xacts) return their C(actions)).
    type: list
    elements: raw
    default: []
  after:
    description:
      - The result of a second M(gpops.greenplum.gp_hang_info) run after the actions, which says what is left.
    type: dict
seealso:
  - module: gpops.greenplum.gp_hang_info
  - name: Mermaid flowcharts
    description: The diagram syntax of the wait-for graph in the Markdown hang_report.
    link: https://mermaid.js.org/syntax/flowchart.html
  - name: Greenplum global deadlock detector
    description: The wait-for graph the report draws.
    link: https://docs.vmware.com/en/VMware-Greenplum/7/greenplum-database/admin_guide-dml.html#global-deadlock-detector
'''

EXAMPLES = r'''
- name: Diagnose
  gpops.greenplum.gp_hang_info:
  register: hang

- name: Save the evidence before acting
  gpops.greenplum.gp_report:
    hang_info: "{{ hang }}"
    dest: "{{ gp_report_dir }}"
    cluster: "{{ inventory_hostname }}"
  register: report

- name: Break deadlocks
  gpops.greenplum.gp_deadlock:
    state: resolved
  register: resolved

- name: Diagnose again
  gpops.greenplum.gp_hang_info:
  register: hang_after

- name: Complete the report with what was done and what is left
  gpops.greenplum.gp_report:
    hang_info: "{{ hang }}"
    dest: "{{ gp_report_dir }}"
    cluster: "{{ inventory_hostname }}"
    actions: "{{ resolved.actions }}"
    after: "{{ hang_after }}"
'''

RETURN = r'''
json_path:
  description: Path of the JSON hang_report.
  returned: always
  type: str
  sample: /var/log/gpops/gp-hang-mdw-20261121T054125.json
markdown_path:
  description: Path of the Markdown hang_report.
  returned: always
  type: str
  sample: /var/log/gpops/gp-hang-mdw-20261121T054125.md
schema_version:
  description: Version of the JSON report's schema.
  returned: always
  type: int
  sample: 1
verdict:
  description: C(hung), C(degraded) or C(healthy) (as the C(verdict) of M(gpops.greenplum.gp_hang_info)).
  returned: always
  type: str
  sample: hung
summary:
  description: Short lines for the play output (verdict, one line per finding, what was done).
  returned: always
  type: list
  elements: str
  sample:
    - "mdw: HUNG (1 critical, 1 info)"
    - "[critical] global_deadlock: global deadlock between gxid 17, 18 across content 0, 1; ..."
'''

import os
import tempfile

from ansible_collections.gpops.greenplum.plugins.module_utils.report import hang_report
from ansible_collections.gpops.greenplum.plugins.module_utils.common.module_base import local_module


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def _write(module, path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".gp-report-")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o640)
    module.atomic_move(tmp, path)


def main():
    module = local_module(dict(
        hang_info=dict(type="dict"),
        log_info=dict(type="dict"),
        dest=dict(type="path", required=True),
        cluster=dict(type="str", default="cluster"),
        actions=dict(type="list", elements="raw", default=[]),
        after=dict(type="dict"),
    ))
    p = module.params
    for name, value in (("hang_info", p["hang_info"]), ("after", p["after"])):
        if value is not None and not all(k in value for k in ("findings", "snapshot")):
            module.fail_json(msg="%s must be a registered gp_hang_info result (with findings and "
                                 "snapshot); got keys %s" % (name, ", ".join(sorted(value))))
    if p["log_info"] is not None and not all(k in p["log_info"] for k in ("events", "chains")):
        module.fail_json(msg="log_info must be a registered gp_log_info result (with events and chains); "
                             "got keys %s" % ", ".join(sorted(p["log_info"])))
    if p["hang_info"] is None and p["log_info"] is None:
        module.fail_json(msg="hang_info (a gp_hang_info result) or log_info (a gp_log_info result) is required")
    if p["hang_info"] is None:
        doc = hang_report.build_timeline_report(p["log_info"], p["cluster"])
        base = os.path.join(p["dest"], hang_report.timeline_basename(doc))
        json_path, markdown_path = base + ".json", base + ".md"
        texts = {json_path: hang_report.to_json(doc), markdown_path: hang_report.render_timeline_markdown(doc)}
        doc = dict(doc, verdict=None)
    else:
        doc = hang_report.build_report(p["hang_info"], p["cluster"], p["actions"], p["after"], p["log_info"])
        base = os.path.join(p["dest"], hang_report.report_basename(doc))
        json_path, markdown_path = base + ".json", base + ".md"
        texts = {json_path: hang_report.to_json(doc),
                 markdown_path: hang_report.render_markdown(doc, os.path.basename(json_path))}
    old_markdown = _read(markdown_path)
    stale = [path for path, text in texts.items() if _read(path) != text]
    if stale and not module.check_mode:
        try:
            if not os.path.isdir(p["dest"]):
                os.makedirs(p["dest"], 0o750)
            for path in stale:
                _write(module, path, texts[path])
        except (IOError, OSError) as exc:
            module.fail_json(msg="dest: cannot write the report under %s: %s" % (p["dest"], exc.strerror or exc))
    result = dict(changed=bool(stale), json_path=json_path, markdown_path=markdown_path,
                  schema_version=doc["schema_version"], verdict=doc["verdict"],
                  summary=hang_report.summary_lines(doc) if doc.get("verdict") else
                  ["%s: timeline, most severe event %s" % (doc["cluster"], doc["highest_severity"] or "none")]
                  + [ln for c in doc["timeline"]["chains"] for ln in
                     ["chain %d [%s] %s: %s" % (c["id"], c["severity"], c["start"], c["text"])]])
    if module._diff:
        result["diff"] = {"before": old_markdown or "", "after": texts[markdown_path],
                          "before_header": markdown_path, "after_header": markdown_path}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
