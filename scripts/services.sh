#!/usr/bin/env bash
# Makes sure the services the test suite talks to are running on this machine, on their standard
# local ports: PostgreSQL (127.0.0.1:5432, trust authentication for local TCP), Redis
# (127.0.0.1:6379, nothing kept on disk) and NATS with JetStream (127.0.0.1:4222). Starts each one
# that is stopped and installs it from Debian's packages when absent. Idempotent; needs root (or
# sudo) only to install or start. (S3 is s3rver, which the test run starts itself.)
set -euo pipefail

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi

apt_updated=false
install() {
  if ! $apt_updated; then $SUDO apt-get update -qq; apt_updated=true; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
}

# Waits up to 30 s for a readiness check; fails naming the service when it never answers.
await_ready() {
  local name=$1 check=$2
  for _ in $(seq 1 30); do $check && break; sleep 1; done
  $check || { echo "services: $name is not answering" >&2; exit 1; }
  echo "services: $name ready"
}

# PostgreSQL.
postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! postgres_ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing PostgreSQL from Debian's packages"
    install postgresql
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    # A fresh cluster asks for passwords over TCP; the tests connect as postgres without one.
    echo "host all all 127.0.0.1/32 trust" | $SUDO tee "/etc/postgresql/$version/main/pg_hba.conf.photovault" >/dev/null
    $SUDO sh -c "cat /etc/postgresql/$version/main/pg_hba.conf.photovault /etc/postgresql/$version/main/pg_hba.conf > /tmp/pg_hba.conf.new && mv /tmp/pg_hba.conf.new /etc/postgresql/$version/main/pg_hba.conf"
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "services: starting PostgreSQL $version"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
await_ready "PostgreSQL on 127.0.0.1:5432" postgres_ready

# Redis: a cache here, so nothing is saved to disk.
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
if ! redis_ready; then
  command -v redis-server >/dev/null || { echo "services: installing Redis from Debian's packages"; install redis-server; }
  echo "services: starting Redis"
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
await_ready "Redis on 127.0.0.1:6379" redis_ready

# NATS with JetStream. Its monitoring port is off, so readiness is a bare TCP connect.
nats_ready() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if ! nats_ready; then
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "services: installing NATS from Debian's packages"; install nats-server; }
  echo "services: starting NATS with JetStream"
  $SUDO mkdir -p /var/lib/nats-server
  $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
fi
await_ready "NATS on 127.0.0.1:4222" nats_ready
