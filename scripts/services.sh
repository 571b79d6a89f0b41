#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this machine: PostgreSQL on
# 127.0.0.1:5432 with trust authentication for local TCP. Starts it when stopped and installs it
# from Debian's packages when absent. Idempotent; needs root (or sudo) only to install or start.
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! postgres_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL from Debian's packages"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    # A fresh cluster asks for passwords over TCP; the tests connect as postgres without one.
    echo "host all all 127.0.0.1/32 trust" | $SUDO tee "/etc/postgresql/$version/main/pg_hba.conf.photovault" >/dev/null
    $SUDO sh -c "cat /etc/postgresql/$version/main/pg_hba.conf.photovault /etc/postgresql/$version/main/pg_hba.conf > /tmp/pg_hba.conf.new && mv /tmp/pg_hba.conf.new /etc/postgresql/$version/main/pg_hba.conf"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services: starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do postgres_ready && break; sleep 1; done
fi
postgres_ready || { echo "services: PostgreSQL is not answering on 127.0.0.1:5432" >&2; exit 1; }
echo "services: PostgreSQL ready"
