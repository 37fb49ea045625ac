#!/bin/sh
# Container entrypoint, one image for every role:
#   prefect-worker   a Prefect worker on the CPU pool (orchestration: archive and pair flows)
#   gpu-worker       a Dask worker holding one GPU and its resident model (one container per GPU)
#   healthcheck      exit 0 when this container's role answers (Docker HEALTHCHECK)
#   anything else    run as given (Kubernetes pair Jobs: prefect flow-run execute ...)
set -e
role="${1:-prefect-worker}"
case "$role" in
  prefect-worker)
    shift || true
    exec prefect worker start --pool "${DREAMMOVER_POOL:-dreammover-cpu}" --type process \
        --limit "${DREAMMOVER_WORKER_LIMIT:-4}" "$@" ;;
  gpu-worker)
    shift || true
    exec dask worker "${DASK_SCHEDULER_ADDRESS:?set DASK_SCHEDULER_ADDRESS}" --nthreads 1 --nworkers 1 \
        --resources GPU=1 --preload dreammover_tasks.gpu_worker --dashboard-address :8787 \
        --name "${DREAMMOVER_WORKER_NAME:-$(hostname)}" "$@" ;;
  healthcheck)
    if [ -n "$DASK_SCHEDULER_ADDRESS" ]; then
      exec python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8787/health', timeout=5)"
    fi
    exec python -c "import os, urllib.request; urllib.request.urlopen(os.environ['PREFECT_API_URL'] + '/health', timeout=5)" ;;
esac
exec "$@"
