#!/usr/bin/env bash
# The production stack for real, on one machine, in a few minutes (CPU devices, tiny model):
# a Prefect server (on PostgreSQL as in production: Debian's postgresql, a throwaway cluster started
# here by deploy/pg_start.sh; PREFECT_DB=sqlite for SQLite instead; 127.0.0.1, temporary
# PREFECT_HOME), the CPU work pool and the
# deployments from deploy/, one Prefect CPU worker, a Dask scheduler and TWO GPU-pool workers
# (Dask workers with GPU=1 each, here on the CPU), then the `daily` deployment over 3 pairs.
# Prints one line
#   smoke: pairs done=D failed=F model_loads=L workers_used=W seconds=S
# and exits 0 only if D=3, F=0, L <= 2, W = 2 and the server's scheduler created a scheduled run
# for the cron deployment. Every process it starts is stopped on exit.
#   bash deploy/smoke.sh            (KEEP=1 keeps the work folder; PAIRS=dir overrides the pairs)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
START=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dreammover-smoke.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ -n "${PG_DIR:-}" ]; then bash "$ROOT/deploy/pg_start.sh" --stop "$PG_DIR"; fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "smoke: kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
start() {  # start <log name> <command...>: in the background, remembered for cleanup
    local log="$WORK/$1.log"; shift
    "$@" >"$log" 2>&1 &
    PIDS+=($!)
}
wait_http() {  # wait_http <url> <seconds>
    for _ in $(seq $(( $2 * 5 ))); do
        python -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" 2>/dev/null && return 0
        sleep 0.2
    done
    echo "smoke: $1 did not answer in $2 s" >&2; return 1
}

export PREFECT_HOME="$WORK/prefect" PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_UI_ENABLED=false
export PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=2   # the scheduler's first pass comes quickly
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false DREAMMOVER_HOME="$WORK/home"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PORT=$(free_port)
export PREFECT_API_URL="http://127.0.0.1:$PORT/api"

if [ "${PREFECT_DB:-postgres}" = postgres ]; then
    PG_DIR="$WORK/pg"
    PREFECT_API_DATABASE_CONNECTION_URL=$(bash deploy/pg_start.sh "$PG_DIR" "$(free_port)")
    export PREFECT_API_DATABASE_CONNECTION_URL
    echo "smoke: Prefect server on PostgreSQL ($PREFECT_API_DATABASE_CONNECTION_URL)" >&2
fi
start server prefect server start --host 127.0.0.1 --port "$PORT"
DPORT=$(free_port)
start scheduler dask scheduler --host 127.0.0.1 --port "$DPORT" --no-dashboard
for i in 0 1; do  # CUDA_VISIBLE_DEVICES=$i on a GPU machine; here both run on the CPU
    start "gpu-worker-$i" dask worker "tcp://127.0.0.1:$DPORT" --nthreads 1 --nworkers 1 --resources GPU=1 \
        --preload dreammover_tasks.gpu_worker --no-dashboard --name "gpu-$i"
done

# Inputs while the services start: the tiny model and 3 pairs.
mkdir -p "$WORK/pairs"
MODEL=$(python -c "import sys; from dreammover.tiny import ensure_tiny_model; print(ensure_tiny_model(sys.argv[1]))" \
        "$WORK/models")
for p in $(ls "${PAIRS:-$ROOT/../shared/fixtures/pairs}" | head -3); do
    mkdir -p "$WORK/pairs/$p"
    cp "${PAIRS:-$ROOT/../shared/fixtures/pairs}/$p"/[01].* "$WORK/pairs/$p/"
done
[ "$(ls "$WORK/pairs" | wc -l)" = 3 ] || { echo "smoke: need 3 pair folders (../shared/fixtures/pairs)" >&2; exit 2; }

wait_http "$PREFECT_API_URL/health" 180
prefect --no-prompt work-pool create dreammover-cpu --type process \
    --base-job-template deploy/work-pools/cpu-process.json --overwrite >"$WORK/setup.log" 2>&1
prefect --no-prompt variable set dreammover_workdir "$ROOT" --overwrite >>"$WORK/setup.log" 2>&1
# The local variant of deploy/prefect.yaml: local folders, the tiny model, this Dask scheduler.
python deploy/smoke_check.py localize deploy/prefect.yaml "$WORK/prefect.yaml" --source "$WORK/pairs" \
    --output "$WORK/clips" --cache "$WORK/cache" --model "$MODEL" --dask "tcp://127.0.0.1:$DPORT"
prefect --no-prompt deploy --prefect-file "$WORK/prefect.yaml" --all >>"$WORK/setup.log" 2>&1 \
    || { tail -20 "$WORK/setup.log" >&2; exit 1; }
start cpu-worker prefect worker start --pool dreammover-cpu --type process --limit 2

python deploy/smoke_check.py run --output "$WORK/clips" --gpu-workers 2 --start "$START" \
    --logs "$WORK" --timeout "${SMOKE_TIMEOUT:-540}"
