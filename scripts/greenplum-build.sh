#!/usr/bin/env bash
# Build Greenplum 7 from its source archive and install it under a fixed prefix,
# cached by the archive's sha256: a second run with the same archive costs seconds.
#
#   GP_ARCHIVE         the source archive (default: ../shared/greenplum/gpdb-7.0.0-beta.0.tar.xz
#                      beside this checkout)
#   GP_ARCHIVE_SHA256  the sha256 the archive must have (default: 7.0.0-beta.0's); set it
#                      to build another archive on purpose
#   GPOPS_GP_ROOT      where builds are installed (default /opt/gpops); the prefix is
#                      $GPOPS_GP_ROOT/greenplum-<first 12 hex digits of the sha256>
#   GPOPS_GP_USER      the non-root OS user that owns the install and runs the cluster
#                      (default gpadmin; created when missing)
#
# Prints the prefix (GPHOME) on its last line. Nothing half-installed: the prefix is
# complete only when it holds .gpops-build (the archive's sha256), written last; a
# failed build removes the prefix. Build facts (packages, configure flags, the gcc 12
# flag, times): docs/real-greenplum.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

archive=${GP_ARCHIVE:-$top/../shared/greenplum/gpdb-7.0.0-beta.0.tar.xz}
want_sha=${GP_ARCHIVE_SHA256:-7abcb70cf5fd832597ebcce5cdda16cb1e0c50968082ff52d614bd658a93c99a}
root=${GPOPS_GP_ROOT:-/opt/gpops}
gpuser=${GPOPS_GP_USER:-gpadmin}

die() { echo "greenplum-build: $*" >&2; exit 1; }

[ -e "$archive" ] || die "source archive not found: $archive (set GP_ARCHIVE to its path)"
[ -f "$archive" ] && [ -r "$archive" ] || die "source archive is not a readable file: $archive"
have_sha=$(sha256sum "$archive" | cut -d' ' -f1)
[ "$have_sha" = "$want_sha" ] || die "sha256 of $archive is $have_sha, expected $want_sha: the archive is corrupt or another one (set GP_ARCHIVE_SHA256 to build another archive on purpose); nothing was installed"

prefix=$root/greenplum-${have_sha:0:12}
if [ "$(cat "$prefix/.gpops-build" 2>/dev/null)" = "$have_sha" ]; then
  echo "greenplum-build: reusing $prefix (built from $archive)" >&2
  echo "$prefix"
  exit 0
fi

[ "$(id -u)" -eq 0 ] || die "run as root: it installs Debian packages and creates the user $gpuser"

packages=(
  build-essential bison flex libreadline-dev zlib1g-dev libapr1-dev libevent-dev libzstd-dev
  libcurl4-openssl-dev libxml2-dev libssl-dev libkrb5-dev libbz2-dev libyaml-dev libxerces-c-dev
  python3-dev python3-psutil python3-yaml python3-pygresql openssh-server openssh-client rsync
  iproute2 net-tools locales libperl-dev perl pkg-config libuv1-dev libxslt1-dev iputils-ping
  xz-utils procps
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "greenplum-build: installing Debian packages: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # openssh-server's package starts a system sshd; the cluster script runs its own.
  systemctl disable --now ssh 2>/dev/null || service ssh stop 2>/dev/null || true
fi
if ! locale -a 2>/dev/null | grep -qi '^en_US\.utf-\?8$'; then
  sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
  grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >> /etc/locale.gen
  locale-gen >/dev/null
fi
id "$gpuser" >/dev/null 2>&1 || useradd -m -s /bin/bash "$gpuser"

build=$(mktemp -d /var/tmp/gpops-greenplum-build.XXXXXX)
log=$build.log
ok=0
cleanup() {
  rm -rf "$build"
  if [ $ok -ne 1 ]; then
    rm -rf "$prefix"
    echo "greenplum-build: failed; nothing installed at $prefix. Last lines of $log:" >&2
    tail -n 40 "$log" >&2 || true
  fi
}
trap cleanup EXIT
chown "$gpuser:" "$build"
rm -rf "$prefix"
mkdir -p "$prefix"
chown "$gpuser:" "$prefix"

as_user() { runuser -u "$gpuser" -- "$@"; }
# Called from `make demo` / `make test`, this script inherits MAKELEVEL=1: PostgreSQL's
# Makefile.global then skips its generated headers (it makes them only at MAKELEVEL 0)
# and the build stops on a missing utils/errcodes.h. The build is a make of its own.
unset MAKELEVEL MAKEFLAGS MFLAGS MAKEOVERRIDES
start=$(date +%s)
echo "greenplum-build: building $archive into $prefix (log: $log; about 4 min on 2 quiet cores)" >&2
{
  as_user tar -xJf "$archive" -C "$build" --strip-components=1
  cd "$build"
  as_user ./configure --prefix="$prefix" --disable-orca --disable-gpfdist --without-python \
    --with-openssl --with-libxml --disable-gpcloud PYTHON=/usr/bin/python3
  # gcc 12 stops in src/bin/pgbench/pgbench.c on -Werror=maybe-uninitialized.
  as_user sed -i '/^CFLAGS = /s/$/ -Wno-error=maybe-uninitialized/' src/Makefile.global
  as_user make -j"$(nproc)" -s
  as_user make -s install
  # The demo cluster's scripts, so that the cluster needs only the install.
  as_user mkdir -p "$prefix/share/gpops-gpdemo"
  as_user cp gpAux/gpdemo/demo_cluster.sh gpAux/gpdemo/lalshell "$prefix/share/gpops-gpdemo/"
} >"$log" 2>&1
echo "$have_sha" > "$prefix/.gpops-build"
chown "$gpuser:" "$prefix/.gpops-build"
ok=1
rm -f "$log"
echo "greenplum-build: built in $(( $(date +%s) - start )) s" >&2
echo "$prefix"
