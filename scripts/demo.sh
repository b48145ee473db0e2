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
    -i localhost, -c local -e gp_hosts=localhost \
    -e ansible_python_interpreter="$py" "$@" playbooks/resolve_hang.yml
}

echo "== ansible-playbook playbooks/resolve_hang.yml"
start=$(date +%s.%N)
run_playbook
end=$(date +%s.%N)
printf '== resolve_hang.yml took %.1f s (Greenplum'"'"'s own detector: off by default, every 120 s when on)\n' \
  "$(echo "$end - $start" | bc -l 2>/dev/null || "$py" -c "print($end-$start)")"

echo "== What the deadlocked sessions saw"
sandbox release --report

echo "== Second run: nothing left to do (changed=0)"
run_playbook
