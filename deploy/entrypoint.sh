#!/bin/sh
# Container entrypoint: `worker` (the default) starts a Prefect worker on the GPU pool; anything
# else runs as given, so Kubernetes jobs (args: prefect flow-run execute ...) use the same image.
set -e
if [ "${1:-worker}" = "worker" ]; then
    [ $# -gt 0 ] && shift
    exec prefect worker start --pool "${DREAMMOVER_POOL:-dreammover-gpu}" \
        --type "${DREAMMOVER_POOL_TYPE:-process}" --limit "${DREAMMOVER_WORKER_LIMIT:-1}" "$@"
fi
exec "$@"
