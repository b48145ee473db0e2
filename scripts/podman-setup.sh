#!/usr/bin/env bash
# Prepare this machine for the molecule scenarios (docs/molecule.md):
#   1. Debian packages: podman (rootful), runc, debootstrap.
#   2. /etc/containers/containers.conf: the runc runtime (crun fails on these
#      hosts' cgroup v1 hierarchy), cgroupfs (no systemd), explicit nofile and
#      nproc ulimits below this machine's hard limits (raising them is not
#      permitted, so podman must not inherit or ask for more).
#   3. The cluster-host image, localhost/gpops-debian12:<hash>, from a debootstrap
#      Debian 12 root file system with PostgreSQL 15, Python 3 and psycopg, then
#      `podman import`. No registry is reachable: nothing is ever pulled. The tag
#      is a hash of the recipe below, so an image already built is reused and a
#      changed recipe builds a new one.
# Idempotent. Prints the image reference as its last line; it is also tagged
# localhost/gpops-debian12:latest, the scenarios' default (GPOPS_IMAGE overrides).
#
# Environment: GPOPS_DEBIAN_MIRROR (default: the mirror of /etc/apt/sources.list*
# or deb.debian.org), GPOPS_IMAGE_REBUILD=1 to build even when cached.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# -- 1. host packages ------------------------------------------------------------
# catatonit: the hosts' PID 1 (podman --init) reaps orphans, as a host's init does.
host_packages=(podman runc debootstrap uidmap conmon containernetworking-plugins catatonit)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "podman-setup: installing Debian packages: ${missing[*]}"
  # Other setup scripts may hold apt's locks: wait for them (up to 10 minutes).
  for _ in $(seq 120); do $SUDO apt-get update -qq 2>/dev/null && break; sleep 5; done
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
fi

# -- 2. containers.conf ----------------------------------------------------------
# Ulimits: the smaller of the wanted value and the hard limit of this shell.
pick_limit() {  # wanted hard-limit -> value
  if [ "$2" = unlimited ] || [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi
}
nofile=$(pick_limit 1024 "$(ulimit -Hn)")
nproc=$(pick_limit 1000 "$(ulimit -Hu)")
conf=$(cat <<EOF
# Written by gpops.greenplum scripts/podman-setup.sh.
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
# No systemd and no journald on these machines.
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
)
$SUDO mkdir -p /etc/containers
if [ "$(cat /etc/containers/containers.conf 2>/dev/null)" != "$conf" ]; then
  echo "podman-setup: writing /etc/containers/containers.conf"
  printf '%s\n' "$conf" | $SUDO tee /etc/containers/containers.conf >/dev/null
fi

# -- 3. the image ----------------------------------------------------------------
# Everything a cluster host runs: the sandbox's PostgreSQL 15 servers (and the
# headers and compiler for its PGXS extension), Slony-I for the node-lock
# scenario, Python 3 with psycopg 3 and jmespath for the collection's modules.
image_packages=(
  postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-client-15
  build-essential make libkrb5-dev
  python3 python3-psycopg python3-jmespath
  procps psmisc iproute2 util-linux
  slony1-2-bin postgresql-15-slony1-2
)
suite=bookworm
mirror=${GPOPS_DEBIAN_MIRROR:-$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | awk '{print $2; exit}' || true)}
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
# The tag changes with anything that changes the root file system.
recipe_hash=$(printf '%s\n' "$suite" "${image_packages[@]}" "$(sed -n '/^build_rootfs()/,/^}/p' "$0")" \
  | sha256sum | cut -c1-12)
image="localhost/gpops-debian12:${recipe_hash}"

build_rootfs() {  # dir
  local root=$1; shift
  # debootstrap's minbase, then apt inside the chroot (debootstrap --include
  # resolves dependencies poorly).
  $SUDO debootstrap --variant=minbase "$suite" "$root" "$mirror" >/dev/null
  cat <<EOF | $SUDO tee "$root/etc/apt/sources.list" >/dev/null
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror}-security $suite-security main
EOF
  $SUDO cp /etc/resolv.conf "$root/etc/resolv.conf"
  # No daemons start in the chroot, no default cluster on 5432: the sandbox
  # makes its own instances.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$root/usr/sbin/policy-rc.d" >/dev/null
  $SUDO chmod 755 "$root/usr/sbin/policy-rc.d"
  $SUDO mkdir -p "$root/etc/postgresql-common"
  echo "create_main_cluster = false" | $SUDO tee "$root/etc/postgresql-common/createcluster.conf" >/dev/null
  $SUDO mount -t proc proc "$root/proc"
  $SUDO chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $* >/dev/null \
           && apt-get clean && rm -rf /var/lib/apt/lists/*"
  $SUDO umount "$root/proc"
  $SUDO rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
  $SUDO touch "$root/etc/resolv.conf"
}

if [ "${GPOPS_IMAGE_REBUILD:-0}" != 1 ] && $SUDO podman image exists "$image"; then
  echo "podman-setup: image $image already built"
else
  echo "podman-setup: building $image from debootstrap $suite ($mirror)"
  work=$(mktemp -d /var/tmp/gpops-rootfs.XXXXXX)
  trap '$SUDO umount "$work/rootfs/proc" 2>/dev/null || true; $SUDO rm -rf "$work"' EXIT
  build_rootfs "$work/rootfs" "${image_packages[@]}"
  $SUDO tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" .
  $SUDO podman import \
    --change 'CMD ["sleep", "infinity"]' \
    --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    "$work/rootfs.tar" "$image" >/dev/null
fi
$SUDO podman tag "$image" localhost/gpops-debian12:latest
# Older recipes' images (1.3 GB each) are of no further use.
$SUDO podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/gpops-debian12:' \
  | grep -v -e ":${recipe_hash}\$" -e ':latest$' | xargs -r $SUDO podman rmi >/dev/null || true
echo "$image"
