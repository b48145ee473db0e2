#!/usr/bin/env bash
# The main job on the sandbox: start a Greenplum-compatible cluster, create a real
# global deadlock between two distributed sessions, and run
# playbooks/resolve_hang.yml against it: the deadlock is found, explained and broken,
# the surviving transaction commits, and a second run changes nothing.
# KEEP_SANDBOX=1 leaves the cluster running afterwards.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PYTHONPATH="$top/tests/sandbox"
py="$top/.venv/bin/python"
sandbox() { "$py" -m gpsandbox "$@"; }

cleanup() {
  sandbox release >/dev/null 2>&1 || true
  if [ "${KEEP_SANDBOX:-0}" != "1" ]; then sandbox stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "== Starting the sandbox cluster (coordinator, 3 primaries, 3 mirrors)"
sandbox start
sandbox status

echo "== Injecting a global deadlock (two sessions, two segments, opposite order)"
sandbox inject global_deadlock --background

eval "$("$py" -c 'from gpsandbox import Sandbox
import shlex
for k, v in Sandbox.from_env().coordinator_env().items():
    print("export %s=%s" % (k, shlex.quote(str(v))))')"

run_playbook() {
  ANSIBLE_CONFIG="$top/ansible.cfg" "$top/.venv/bin/ansible-playbook" \
    -i localhost, -c local -e gp_hosts=localhost -e gp_report_dir="$top/reports" \
    -e ansible_python_interpreter="$py" "$@" playbooks/resolve_hang.yml
}
sessions() {
  psql -X -q -c "SELECT application_name AS session, pid, state, wait_event_type, wait_event, query
                   FROM pg_stat_activity WHERE application_name LIKE 'scenario%' ORDER BY 1"
}

echo "== The two sessions, each waiting for the other on a different segment"
sessions
echo "== ansible-playbook playbooks/resolve_hang.yml"
start=$(date +%s)
run_playbook
echo "== resolve_hang.yml took $(( $(date +%s) - start )) s (Greenplum's own detector: off by default; every 120 s when on)"

echo "== The two sessions now: the survivor's UPDATE went through, the victim's was cancelled"
sessions
echo "== Reports (JSON with the raw snapshot, Markdown with the wait-for graph): $top/reports"
ls -1 "$top/reports" | tail -n 4

echo "== Second run: nothing left to do (changed=0)"
run_playbook
