#!/usr/bin/env bash
# The main job on a real Greenplum 7 cluster: build Greenplum 7 from its source archive
# (the first time, about 4 min; cached by the archive's sha256), create or start the
# demo cluster (coordinator, standby, 3 primaries with mirrors, on 127.0.0.1), make a
# real global deadlock between two distributed sessions, and run
# playbooks/resolve_hang.yml against it: the deadlock is found, explained and broken,
# the surviving transaction commits, and a second run changes nothing.
# The PostgreSQL sandbox version of this demo: scripts/demo-sandbox.sh (make demo-sandbox).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
py="$top/.venv/bin/python"

echo "== Greenplum 7: build (first time only) and start the demo cluster"
bash scripts/greenplum-cluster.sh start
eval "$(bash scripts/greenplum-cluster.sh env)"
export PGDATABASE=gpops_test

ready=$(mktemp -u /tmp/gpops-demo.XXXXXX)
echo "== A real global deadlock: two sessions, two segments, opposite order"
"$py" scripts/demo_deadlock.py "$ready" > "$ready.out" 2>&1 &
helper=$!
trap 'kill $helper 2>/dev/null || true; rm -f "$ready" "$ready.out"' EXIT
for _ in $(seq 600); do
  [ -s "$ready" ] && break
  kill -0 $helper 2>/dev/null || { cat "$ready.out"; echo "demo: the deadlock could not be made"; exit 1; }
  sleep 0.1
done
[ -s "$ready" ] || { echo "demo: the deadlock was not made in 60 s"; exit 1; }
psql -X -q -c "SELECT application_name AS session, pid, sess_id, state, wait_event_type, wait_event, query
                 FROM pg_catalog.pg_stat_activity WHERE application_name LIKE 'demo_%' ORDER BY 1"

run_playbook() {
  ANSIBLE_CONFIG="$top/ansible.cfg" "$top/.venv/bin/ansible-playbook" \
    -i localhost, -c local -e gp_hosts=localhost -e gp_report_dir="$top/reports" \
    -e ansible_python_interpreter="$py" "$@" playbooks/resolve_hang.yml
}
echo "== ansible-playbook playbooks/resolve_hang.yml"
start=$(date +%s)
run_playbook
echo "== resolve_hang.yml took $(( $(date +%s) - start )) s (Greenplum's own detector here: every hour)"

echo "== The two sessions: the victim's statement was cancelled, the survivor committed"
wait $helper && ok=0 || ok=$?
cat "$ready.out"
[ "$ok" -eq 0 ] || { echo "demo: the deadlock did not end as expected"; exit 1; }
echo "== Reports (JSON with the snapshot, Markdown with the wait-for graph): $top/reports"
ls -1 "$top/reports" | tail -n 4

echo "== Second run: nothing left to do (changed=0)"
run_playbook
