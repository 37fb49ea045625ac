#!/usr/bin/env bash
# Start a throwaway PostgreSQL (Debian's `postgresql` package) for the Prefect server, as compose runs
# one in production: a new cluster in DIR, listening on 127.0.0.1:PORT only, trust auth for local
# connections, a database `prefect`. Prints the SQLAlchemy URL for PREFECT_API_DATABASE_CONNECTION_URL.
#   bash deploy/pg_start.sh DIR PORT      (stop it with: bash deploy/pg_start.sh --stop DIR)
# PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres` system user.
set -euo pipefail

bin_dir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$found" ] || { echo "pg_start: PostgreSQL is not installed (apt-get install -y postgresql)" >&2; exit 2; }
    echo "$found"
}
as_owner() {  # run a PostgreSQL binary as the cluster's owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BIN=$(bin_dir)
if [ "${1:-}" = "--stop" ]; then
    as_owner "$BIN/pg_ctl" -D "$2/data" -m fast -w stop >/dev/null 2>&1 || true
    exit 0
fi
DIR=$1 PORT=$2
mkdir -p "$DIR"
if [ "$(id -u)" = 0 ]; then
    chown postgres "$DIR"
    # The owner must reach DIR: let others traverse (not list) its parents, e.g. a mktemp -d folder (700).
    up=$(dirname "$(realpath "$DIR")")
    while [ "$up" != / ]; do chmod o+x "$up"; up=$(dirname "$up"); done
fi
as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust --encoding=UTF8 >"$DIR/initdb.log" 2>&1 \
    || { tail -5 "$DIR/initdb.log" >&2; exit 1; }
# Socket in DIR (not /var/run/postgresql, which may not exist or belong to a system cluster).
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200 -c fsync=off" start >/dev/null \
    || { tail -20 "$DIR/server.log" >&2; exit 1; }
as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres prefect
echo "postgresql+asyncpg://postgres@127.0.0.1:$PORT/prefect"
