"""Run the collection's playbooks (resolve_hang.yml, health_check.yml) against the real
Greenplum 7 cluster of the tests: localhost is the one cluster host, the connection
comes from the cluster's ``PG*`` variables.

``run_playbook(gp, name, tmp_path, check=False, **extra_vars)`` (``check``: ``--check``) returns a ``Play``: ``rc``, ``out``
(stdout + stderr), ``recap`` (ok/changed/unreachable/failed), ``report`` (the JSON
report document when ``gp_report_dir`` was given, else None), ``stats`` (the
``gpops_health`` set_stats of health_check.yml, else None).
"""
import collections
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
Play = collections.namedtuple("Play", "rc out recap report stats")


def run_playbook(gp, name, tmp_path, env=None, timeout=300, check=False, **extra_vars):
    inventory = os.path.join(str(tmp_path), "inventory")
    with open(inventory, "w") as f:
        f.write("[greenplum]\nlocalhost ansible_connection=local ansible_python_interpreter=%s\n"
                % sys.executable)
    report_dir = extra_vars.get("gp_report_dir")
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".collections"),
                   ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_SHOW_CUSTOM_STATS="1", ANSIBLE_LOCALHOST_WARNING="false")
    for var in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGOPTIONS"):
        run_env.pop(var, None)
    run_env.update(gp.env())
    run_env.update(env or {})
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"),
                           "-i", inventory, "-e", json.dumps(extra_vars)] + (["--check"] if check else []) + [
                           os.path.join(ROOT, "playbooks", name)],
                          cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    match = RECAP.search(proc.stdout)
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups()))) if match else None
    report = None
    if report_dir and os.path.isdir(report_dir):
        found = sorted(f for f in os.listdir(report_dir) if f.endswith(".json"))
        if found:
            with open(os.path.join(report_dir, found[-1])) as f:
                report = json.load(f)
    stats = re.search(r"^\s*RUN: (\{.*\})\s*$", proc.stdout, re.M)
    stats = json.loads(stats.group(1)).get("gpops_health") if stats else None
    return Play(proc.returncode, out, recap, report, stats)
