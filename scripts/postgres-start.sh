#!/usr/bin/env bash
# Starts the machine's PostgreSQL (Debian's postgresql package, installed
# if missing) and makes sure the test role exists: calpresence/calpresence,
# allowed to create databases (each test creates its own, internal/pgtest).
# Idempotent: a cluster already running and a role already there are fine.
set -euo pipefail

if ! command -v pg_lsclusters >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends postgresql
fi
ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$ver" main
fi
if ! pg_lsclusters -h | awk -v v="$ver" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  pg_ctlcluster "$ver" main start
fi
for _ in $(seq 30); do
  if su postgres -c "psql -qAtc 'SELECT 1'" >/dev/null 2>&1; then break; fi
  sleep 1
done
su postgres -c "psql -v ON_ERROR_STOP=1 -qAt" <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'calpresence') THEN
    CREATE ROLE calpresence LOGIN PASSWORD 'calpresence' CREATEDB;
  END IF;
END
$$;
SQL
echo "postgresql $ver: running; role calpresence ready"
