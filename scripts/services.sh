#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer on loopback for the tests that need them, starting
# them (and, as root, installing them from Debian's packages) when they are not running.
# Prints the URLs the tests should use; never fails the caller: tests that need a missing
# service say why (and fail in CI).
set -uo pipefail

pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }
redis_up() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
as_root() { [ "$(id -u)" = "0" ]; }

install_packages() {
  as_root || return 1
  command -v apt-get >/dev/null 2>&1 || return 1
  echo "installing $* from Debian's packages ..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null 2>&1
}

start_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    install_packages postgresql || return 1
  fi
  local version
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)"
  [ -n "$version" ] || return 1
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
  pg_up || return 1
  # Trust auth on loopback and a `test` database owned by the calling user, as CI expects.
  if as_root; then
    su postgres -c "psql -q -h 127.0.0.1 -c \"DO \\\$\\\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END \\\$\\\$;\"" >/dev/null 2>&1 || true
    su postgres -c "createdb -h 127.0.0.1 -O root test" >/dev/null 2>&1 || true
  fi
}

start_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    install_packages redis-server || return 1
  fi
  mkdir -p /tmp/cloudgate-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/cloudgate-redis --logfile /tmp/cloudgate-redis/redis.log >/dev/null 2>&1 || return 1
  for _ in $(seq 1 20); do redis_up && return 0; sleep 0.25; done
  return 1
}

pg_up || start_postgres || echo "warning: PostgreSQL is not available on 127.0.0.1:5432" >&2
redis_up || start_redis || echo "warning: Redis is not available on 127.0.0.1:6379" >&2

if pg_up; then
  echo "CLOUDGATE_TEST_POSTGRES_URL=postgresql+asyncpg://$(id -un)@127.0.0.1:5432/test"
fi
if redis_up; then
  echo "CLOUDGATE_TEST_REDIS_URL=redis://127.0.0.1:6379/0"
fi
exit 0
