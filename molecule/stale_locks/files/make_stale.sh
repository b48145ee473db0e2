#!/bin/sh
# On a segment host, leave what a crash followed by PID reuse leaves (issue 6):
# - mirror 1's postmaster.pid naming a live process of the same OS user, so that
#   PostgreSQL's own kill -0 check refuses to start the mirror;
# - a Slony-I node lock row (sl_nodelock) of a slon killed with -9, naming such a
#   PID too, so that slon cannot start ("duplicate key ... sl_nodelock-pkey").
# Usage: make_stale.sh BASE_DIR SLONY_PORT. Writes BASE_DIR/stale/{sleeper.pid,*.log}.
set -eu
base=$1
slony_port=$2
bin=/usr/lib/postgresql/15/bin
datadir=$base/mirror1
stale=$base/stale
as_gpadmin() { runuser -u gpadmin -- "$@"; }
psql_db1() { as_gpadmin psql -h 127.0.0.1 -p "$slony_port" -d db1 -X -A -t -v ON_ERROR_STOP=1 -c "$1"; }
wait_for() {  # seconds command...: until the command prints something
  n=$1; shift
  while [ "$n" -gt 0 ]; do out=$("$@") && [ -n "$out" ] && [ "$out" != 0 ] && return 0; sleep 1; n=$((n - 1)); done
  echo "timed out: $*" >&2; return 1
}
mkdir -p "$stale"; chown gpadmin: "$stale"

# The process that reuses the PIDs: any process of the servers' OS user.
sleeper=$(as_gpadmin sh -c 'nohup sleep infinity >/dev/null 2>&1 & echo $!')
echo "$sleeper" > "$stale/sleeper.pid"

# Mirror 1 stops, and its postmaster.pid is left naming the sleeper.
cp "$datadir/postmaster.pid" "$stale/postmaster.pid.orig"
as_gpadmin "$bin/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
sed "1s/.*/$sleeper/" "$stale/postmaster.pid.orig" > "$datadir/postmaster.pid"
chown gpadmin: "$datadir/postmaster.pid"; chmod 600 "$datadir/postmaster.pid"
if as_gpadmin "$bin/pg_ctl" -D "$datadir" -l "$stale/mirror1-start.log" -w -t 10 start > "$stale/mirror1-start.out" 2>&1; then
  echo "mirror 1 started despite the stale postmaster.pid" >&2; exit 1
fi

# A Slony-I cluster (nodes 1 and 2 on databases db1, db2 of one server).
as_gpadmin "$bin/initdb" -D "$stale/slony" -U gpadmin -A trust -N >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\n" \
  "$slony_port" "$stale" >> "$stale/slony/postgresql.conf"
as_gpadmin "$bin/pg_ctl" -D "$stale/slony" -l "$stale/slony.log" -w start >/dev/null
for db in db1 db2; do as_gpadmin "$bin/createdb" -h 127.0.0.1 -p "$slony_port" "$db"; done
conn() { echo "host=127.0.0.1 port=$slony_port dbname=db$1 user=gpadmin"; }
as_gpadmin slonik <<SLONIK
cluster name = gpops;
node 1 admin conninfo = '$(conn 1)';
node 2 admin conninfo = '$(conn 2)';
init cluster (id = 1, comment = 'node 1');
store node (id = 2, comment = 'node 2', event node = 1);
store path (server = 1, client = 2, conninfo = '$(conn 1)');
store path (server = 2, client = 1, conninfo = '$(conn 2)');
SLONIK

# slon for node 1 takes its node lock, then dies with -9: the row stays.
as_gpadmin sh -c "nohup slon gpops '$(conn 1)' >> '$stale/slon.log' 2>&1 &"
lock="select nl_backendpid from _gpops.sl_nodelock where nl_nodeid = 1 and nl_conncnt = 0"
wait_for 60 psql_db1 "$lock" >/dev/null
pkill -9 -u gpadmin -x slon
n=30
until [ "$(psql_db1 "select count(*) from pg_stat_activity where application_name like 'slon%'")" = 0 ]; do
  n=$((n - 1)); [ "$n" -gt 0 ] || { echo "slon's backends did not exit" >&2; exit 1; }; sleep 1
done
psql_db1 "update _gpops.sl_nodelock set nl_backendpid = $sleeper where nl_nodeid = 1 and nl_conncnt = 0" >/dev/null
