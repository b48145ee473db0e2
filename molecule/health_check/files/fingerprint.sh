#!/bin/sh
# What a read-only job must leave as it found it on a cluster host: the server
# configuration files and postmasters of every data directory here and, on the
# coordinator's host, the catalog, the sync replication setting of each primary
# and the sessions of the injected blocking chain.
# Usage: fingerprint.sh BASE_DIR COORDINATOR_PORT (prints text; compare two runs).
set -eu
base=$1
port=$2
q() { PGOPTIONS="${3:-}" psql -h 127.0.0.1 -p "$1" -U gpadmin -d postgres -X -A -t -v ON_ERROR_STOP=1 -c "$2"; }
cd "$base"
for d in */; do
  d=${d%/}
  [ -f "$d/PG_VERSION" ] || continue
  for f in postgresql.conf postgresql.auto.conf pg_hba.conf gpsim_node.conf standby.signal; do
    [ -f "$d/$f" ] && md5sum "$d/$f"
  done
  echo "$d postmaster.pid $(head -n 1 "$d/postmaster.pid")"
done
ps -u gpadmin -o pid=,args= | grep -E 'bin/postgres -D' | sort -n
if [ -f coordinator/PG_VERSION ]; then
  q "$port" "SELECT dbid, content, role, preferred_role, mode, status, hostname FROM gp_segment_configuration ORDER BY dbid"
  q "$port" "SELECT count(*) FROM gp_configuration_history"
  q "$port" "SELECT port FROM gp_segment_configuration WHERE role = 'p' AND content >= 0 ORDER BY port" |
    while read -r p; do echo "primary $p synchronous_standby_names=$(q "$p" 'SHOW synchronous_standby_names' '-c gp_role=utility')"; done
  q "$port" "SELECT application_name, pid, state, wait_event_type FROM pg_stat_activity
             WHERE application_name LIKE 'scenario_%' ORDER BY application_name"
fi
