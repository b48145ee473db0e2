#!/usr/bin/env bash
# Prepare this machine for the demo and the tests: Debian packages, a Python
# virtual environment in .venv, and the collection linked where Ansible finds it.
# Idempotent: a second run installs nothing new.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

apt_packages=(
  postgresql-15 postgresql-contrib postgresql-server-dev-15 postgresql-client-15
  build-essential libkrb5-dev procps psmisc util-linux
  slony1-2-bin postgresql-15-slony1-2
  auditd apache2
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  # Debian's package starts a default cluster on 5432; the sandbox does not need it.
  $SUDO systemctl stop postgresql 2>/dev/null || $SUDO service postgresql stop 2>/dev/null || true
  # Debian's apache2 starts listening on every address, port 80; the tests start their own
  # httpd on 127.0.0.1 only.
  if printf '%s\n' "${missing[@]}" | grep -qx apache2; then
    $SUDO systemctl disable --now apache2 2>/dev/null || $SUDO service apache2 stop 2>/dev/null || true
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
stamp=.venv/.requirements.sha
want=$(cat requirements.txt tests/requirements-test.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  (cd tests && ../.venv/bin/pip install -q -r requirements-test.txt)
  echo "$want" > "$stamp"
fi

# filelock 3.x (it polls flock(LOCK_NB) and sleeps, so a self-deadlock is no kernel wait;
# 4.x raises instead): only for the lock-file tests' helper, never on the managed nodes.
if [ ! -d .venv-filelock3/filelock ]; then
  echo "setup: installing filelock 3.x into .venv-filelock3 (test helper only)"
  .venv/bin/pip install -q --target .venv-filelock3 'filelock==3.16.1'
fi

mkdir -p .collections/ansible_collections/gpops
ln -sfn ../../.. .collections/ansible_collections/gpops/greenplum
echo "setup: ready"
