"""Which failures are worth a retry, and the retry/timeout options every pipeline task uses.

Transient: storage throttling/outages (`TransientStorageError`), a GPU out of memory (another
task may hold it; the model tasks already retried with a smaller batch inside), a Dask worker
that died under a task. Permanent: everything else (bad photo, no bucket, no permission,
a bug): retrying those only delays the report, so they fail at once.
"""
from __future__ import annotations

from prefect.tasks import exponential_backoff

from .storage import TransientStorageError


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA/MPS out-of-memory, across torch versions (older ones raise a plain RuntimeError)."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def halving_on_oom(run, batch: int, device, on_halve):
    """run(batch), halving `batch` on out-of-memory down to 1; for knobs that cannot change the result.

    Below 1 it re-raises: the task's retry policy then tries again later, when the GPU may hold less.
    on_halve(batch) is told each smaller batch (the caller's log line).
    """
    while True:
        try:
            return run(batch)
        except Exception as err:  # torch raises OutOfMemoryError or a RuntimeError, by version
            if not is_out_of_memory(err) or batch <= 1:
                raise
            if device.type == "cuda":
                import torch

                torch.cuda.empty_cache()
            batch = max(1, batch // 2)
            on_halve(batch)


def is_transient(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    if isinstance(exc, (TransientStorageError, ConnectionError, TimeoutError)) or is_out_of_memory(exc):
        return True
    # A worker lost under the task (the scheduler gives the task to another worker, or gives up).
    return type(exc).__name__ in {"KilledWorker", "CommClosedError", "StreamClosedError"}


def retry_if_transient(task, task_run, state) -> bool:
    """Prefect's retry_condition_fn: continue to the retry policy only for transient failures."""
    return is_transient(state.result(raise_on_failure=False))


def retry_options(retries: int = 4) -> dict:
    """Task options: transient-only retries with exponential backoff (2, 4, 8, 16 s, ±50 %).

    The backoff outlasts a storage outage of about half a minute on top of botocore's own
    retries (5 attempts each). No task-level timeout: Prefect cannot interrupt a sync task in a
    worker thread or on a Dask worker (it only warns); hangs are bounded by the pair flow's
    timeout, the archive's per-pair deadline and, on Kubernetes, the Job's activeDeadlineSeconds.
    """
    return dict(retries=retries, retry_delay_seconds=exponential_backoff(backoff_factor=2),
                retry_jitter_factor=0.5, retry_condition_fn=retry_if_transient)
