#!/usr/bin/env bash
# A real Greenplum 7 demo cluster on loopback for the demo and the integration tests:
# coordinator, standby coordinator, 3 primaries with mirrors, gp_inject_fault.
#
#   greenplum-cluster.sh create    build Greenplum if needed (scripts/greenplum-build.sh),
#                                  then create the cluster anew (about 30 s)
#   greenplum-cluster.sh start     start it (create it when missing)
#   greenplum-cluster.sh stop      stop it (gpstop -a -M fast; every node that runs)
#   greenplum-cluster.sh destroy   stop it and remove its data
#   greenplum-cluster.sh status    one line per node: content, role, port, running or not
#   greenplum-cluster.sh env       shell lines to use it (GPHOME, PGHOST, PGPORT, PGUSER, ...)
#   greenplum-cluster.sh sshd-stop stop the loopback sshd the cluster utilities use
#
#   GPOPS_GP7_DIR   the cluster's directory (default /var/tmp/gpops-gp7): datadirs/,
#                   the gpdemo files, cluster.env
#   GPOPS_GP7_PORT  the coordinator's port (default 7700): standby +1, primaries +2..+4
#                   (content 0-2), mirrors +5..+7; nothing else of ours uses 7700-7707
#   GPOPS_SSH_PORT  the loopback sshd's port (default 7799), one for all clusters of the user
#   GPOPS_GP_USER   the non-root OS user that runs Greenplum (default gpadmin)
#
# Runs as root; Greenplum itself runs as GPOPS_GP_USER. Every instance listens on
# 127.0.0.1 only. Facts behind it: docs/real-greenplum.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${GPOPS_GP7_DIR:-/var/tmp/gpops-gp7}
port=${GPOPS_GP7_PORT:-7700}
ssh_port=${GPOPS_SSH_PORT:-7799}
gpuser=${GPOPS_GP_USER:-gpadmin}
sshd_dir=/var/tmp/gpops-sshd

die() { echo "greenplum-cluster: $*" >&2; exit 1; }
say() { echo "greenplum-cluster: $*" >&2; }
[ "$(id -u)" -eq 0 ] || die "run as root (Greenplum runs as $gpuser)"
case "$port" in ''|*[!0-9]*) die "GPOPS_GP7_PORT must be a port number, not '$port'";; esac
[ "$port" -ge 1024 ] && [ "$port" -le 65400 ] || die "GPOPS_GP7_PORT must be in 1024-65400, not $port"

gphome() {
  if [ -f "$dir/cluster.env" ]; then sed -n 's/^export GPHOME=//p' "$dir/cluster.env"; return; fi
  bash "$top/scripts/greenplum-build.sh" | tail -n 1
}

as_gp() {  # run a command as the Greenplum user with the cluster's environment
  runuser -u "$gpuser" -- env -i HOME="$(getent passwd "$gpuser" | cut -d: -f6)" USER="$gpuser" \
    LOGNAME="$gpuser" PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 \
    bash -c "source '$dir/cluster.env' && $1"
}

port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | head -n 1; }

check_ports_free() {
  local p
  for p in $(seq "$port" $((port + 7))); do
    if [ -n "$(port_owner "$p")" ]; then
      die "port $p is taken ($(port_owner "$p" | awk '{print $NF}')): the cluster needs ports $port-$((port + 7)); stop what uses it or set GPOPS_GP7_PORT"
    fi
    remove_stale_socket_lock "$p"
  done
}

# A postmaster killed without cleaning up (a crash, a killed test run) leaves
# /tmp/.s.PGSQL.<port>.lock; the server itself ignores a lock whose pid is gone, but
# gpinitsystem refuses the port ("active database process on port"). The port has no
# listener here (checked before): remove the lock when its pid no longer runs.
remove_stale_socket_lock() {
  local lock="/tmp/.s.PGSQL.$1.lock" pid
  [ -f "$lock" ] || return 0
  pid=$(head -n 1 "$lock" 2>/dev/null || true)
  case "$pid" in ''|*[!0-9]*) return 0;; esac
  if ! kill -0 "$pid" 2>/dev/null; then
    say "removing the stale $lock (pid $pid no longer runs)"
    rm -f "$lock" "/tmp/.s.PGSQL.$1"
  fi
}

loopback_hostname() {
  local h addr
  h=$(hostname)
  addr=$(getent hosts "$h" | awk '{print $1; exit}')
  case "$addr" in
    127.*) ;;
    *) die "host name '$h' resolves to '${addr:-nothing}', not a loopback address: Greenplum's utilities connect to the host name, and this cluster must stay on 127.0.0.1 (add '127.0.0.1 $h' to /etc/hosts)";;
  esac
}

sshd_start() {
  local home
  home=$(getent passwd "$gpuser" | cut -d: -f6)
  mkdir -p "$sshd_dir" /run/sshd
  # useradd leaves the password '!' (locked), and sshd refuses locked accounts even
  # for keys: '*' has no password either but is not locked.
  case "$(getent shadow "$gpuser" | cut -d: -f2)" in '!'*) usermod -p '*' "$gpuser";; esac
  [ -f "$sshd_dir/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$sshd_dir/ssh_host_ed25519_key"
  cat > "$sshd_dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $sshd_dir/ssh_host_ed25519_key
PidFile $sshd_dir/sshd.pid
AllowUsers $gpuser
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
AcceptEnv LANG LC_*
CONF
  runuser -u "$gpuser" -- bash -c '
    set -e; mkdir -p ~/.ssh; chmod 700 ~/.ssh
    [ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -f ~/.ssh/id_ed25519
    grep -qf ~/.ssh/id_ed25519.pub ~/.ssh/authorized_keys 2>/dev/null || cat ~/.ssh/id_ed25519.pub >> ~/.ssh/authorized_keys
    chmod 600 ~/.ssh/authorized_keys'
  printf 'Host %s localhost 127.0.0.1\n  HostName 127.0.0.1\n  Port %s\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n' \
    "$(hostname)" "$ssh_port" > "$home/.ssh/config"
  chown "$gpuser:" "$home/.ssh/config"; chmod 600 "$home/.ssh/config"
  if [ -f "$sshd_dir/sshd.pid" ] && kill -0 "$(cat "$sshd_dir/sshd.pid")" 2>/dev/null; then
    return 0
  fi
  if [ -n "$(port_owner "$ssh_port")" ]; then
    die "port $ssh_port is taken ($(port_owner "$ssh_port" | awk '{print $NF}')), needed by the loopback sshd; set GPOPS_SSH_PORT"
  fi
  /usr/sbin/sshd -f "$sshd_dir/sshd_config" -E "$sshd_dir/sshd.log"
  for _ in $(seq 50); do
    runuser -u "$gpuser" -- ssh -o BatchMode=yes -o ConnectTimeout=2 "$(hostname)" true 2>/dev/null && return 0
    sleep 0.2
  done
  die "the loopback sshd on 127.0.0.1:$ssh_port does not let $gpuser in (see $sshd_dir/sshd.log)"
}

sshd_stop() {
  if [ -f "$sshd_dir/sshd.pid" ]; then
    kill "$(cat "$sshd_dir/sshd.pid")" 2>/dev/null || true
    rm -f "$sshd_dir/sshd.pid"
  fi
}

running() { [ -f "$dir/cluster.env" ] && as_gp "pg_isready -q -h 127.0.0.1 -p $port -t 2" 2>/dev/null; }

create() {
  loopback_hostname
  local home prefix
  prefix=$(bash "$top/scripts/greenplum-build.sh" | tail -n 1)
  [ -x "$prefix/bin/postgres" ] || die "no Greenplum install at '$prefix'"
  if [ -f "$dir/cluster.env" ]; then destroy; fi
  check_ports_free
  sshd_start
  mkdir -p "$dir"; chown "$gpuser:" "$dir"
  cat > "$dir/cluster.env" <<ENV
export GPHOME=$prefix
source $prefix/greenplum_path.sh
export COORDINATOR_DATA_DIRECTORY=$dir/datadirs/qddir/demoDataDir-1
export MASTER_DATA_DIRECTORY=$dir/datadirs/qddir/demoDataDir-1
export PGHOST=127.0.0.1
export PGPORT=$port
export PGUSER=$gpuser
export PGDATABASE=postgres
ENV
  chown "$gpuser:" "$dir/cluster.env"
  cp "$prefix/share/gpops-gpdemo/demo_cluster.sh" "$prefix/share/gpops-gpdemo/lalshell" "$dir/"
  chown "$gpuser:" "$dir/demo_cluster.sh" "$dir/lalshell"
  # GDD on (global deadlocks between UPDATEs need it: with it off the coordinator's
  # ExclusiveLock serialises them), with a period of an hour so that the collection
  # acts first; tests of GDD itself lower the period (a SIGHUP setting).
  local conf_addons="gp_enable_global_deadlock_detector=on,gp_global_deadlock_detector_period=3600"
  local start=$(date +%s)
  say "creating the cluster in $dir (ports $port-$((port + 7)); log: $dir/create.log)"
  if ! as_gp "cd '$dir' && DATADIRS='$dir/datadirs' DEMO_PORT_BASE=$port NUM_PRIMARY_MIRROR_PAIRS=3 \
        WITH_MIRRORS=true WITH_STANDBY=true DEFAULT_QD_MAX_CONNECT=150 \
        BLDWRAP_POSTGRES_CONF_ADDONS=\"listen_addresses='127.0.0.1',$conf_addons\" ./demo_cluster.sh" > "$dir/create.log" 2>&1; then
    tail -n 30 "$dir/create.log" >&2
    die "gpinitsystem failed (whole log: $dir/create.log)"
  fi
  as_gp "psql -qAt -d postgres -c 'CREATE EXTENSION IF NOT EXISTS gp_inject_fault' \
         && psql -qAt -d template1 -c 'CREATE EXTENSION IF NOT EXISTS gp_inject_fault'" >/dev/null
  say "created in $(( $(date +%s) - start )) s"
  status
}

start() {
  if [ ! -f "$dir/cluster.env" ]; then create; return; fi
  loopback_hostname
  # The loopback sshd is one for all clusters of the user: another cluster's stop (a CI
  # run beside this one) may have ended it while this cluster kept running.
  if running; then sshd_start; say "already running on port $port"; return 0; fi
  check_ports_free
  sshd_start
  as_gp "gpstart -a -l '$dir/datadirs/gpAdminLogs'" > "$dir/start.log" 2>&1 || {
    tail -n 30 "$dir/start.log" >&2; die "gpstart failed (whole log: $dir/start.log)"; }
  status
}

stop() {
  [ -f "$dir/cluster.env" ] || { say "no cluster in $dir"; return 0; }
  if running; then
    sshd_start
    as_gp "gpstop -a -M fast -l '$dir/datadirs/gpAdminLogs'" > "$dir/stop.log" 2>&1 || true
  fi
  # Whatever gpstop could not reach (a node stopped or frozen by a test): every
  # postmaster under this cluster's data directories.
  local pidfile pid
  for pidfile in "$dir"/datadirs/*/*/postmaster.pid "$dir"/datadirs/standby/postmaster.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(head -n 1 "$pidfile")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
    kill -CONT "$pid" 2>/dev/null || true
    as_gp "pg_ctl stop -m immediate -D '$(dirname "$pidfile")'" >/dev/null 2>&1 || true
  done
  say "stopped"
}

destroy() {
  stop
  rm -rf "$dir"
  say "removed $dir"
}

status() {
  [ -f "$dir/cluster.env" ] || { echo "no cluster in $dir"; return 0; }
  if ! running; then echo "coordinator on port $port: not running"; return 0; fi
  as_gp "psql -qAt -F ' ' -d postgres -c \"SELECT 'content', content, 'dbid', dbid, role, status, mode, 'port', port FROM pg_catalog.gp_segment_configuration ORDER BY content, role DESC\""
}

env_lines() {
  [ -f "$dir/cluster.env" ] || die "no cluster in $dir (run: $0 create)"
  grep -v '^source' "$dir/cluster.env"
  echo "export GPOPS_GP7_DIR=$dir"
}

case "${1:-}" in
  create) create;;
  start) start;;
  stop) stop;;
  destroy) destroy;;
  status) status;;
  env) env_lines;;
  sshd-stop) sshd_stop;;
  *) die "usage: $0 create|start|stop|destroy|status|env|sshd-stop";;
esac
