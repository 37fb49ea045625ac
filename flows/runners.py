"""Where model work runs: the embedded thread pool, or the Dask GPU worker pool.

`dask` (a CLI option and a flow parameter) names the pool:
  None                 embedded: Prefect's thread pool in this process, one in-process model.
  'local[:N]'          an in-process Dask LocalCluster of N thread workers (tests, debugging).
  'processes[:N]'      a LocalCluster of N worker processes, each holding its model (CPU machines;
                       on CUDA use 'cuda' or one `dask worker` per GPU, or they share cuda:0).
  'cuda'               dask-cuda's LocalCUDACluster: one worker process per visible GPU.
  'tcp://host:8786'    an existing scheduler whose workers were started one per GPU with
                       `--resources GPU=1 --nthreads 1 --preload dreammover_tasks.gpu_worker` (deploy/).
Every model task is submitted with the resource annotation GPU=1, so the scheduler runs at
most one model task per worker (per GPU) and places it by its own resource accounting.
The archive also tags each pair's tasks (tag_pool_work) so that it can cancel, on the scheduler,
the work of a pair it gave up on or of a run that was interrupted (cancel_pool_work).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from dreammover.models import default_cache_dir

# Resource each model task asks for; each GPU worker offers exactly one.
GPU = {"GPU": 1}
WORKER_PRELOAD = "dreammover_tasks.gpu_worker"


def default_cache() -> str:
    """Local cache of pipeline artifacts (LoRA, inversion, chunks, frames, clips)."""
    return str(default_cache_dir() / "pipeline-cache")


def _local_cluster(kind: str, count: str):
    from distributed import LocalCluster

    workers = int(count or 2)
    if kind == "processes":
        import torch

        if torch.cuda.is_available() and workers > 1:
            raise ValueError("--dask processes:N would put N models on one GPU: use --dask cuda (dask-cuda) "
                             "or start one `dask worker --resources GPU=1` per GPU")
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=kind == "processes",
                        resources=GPU, dashboard_address=None, preload=[WORKER_PRELOAD])


@contextlib.contextmanager
def gpu_pool(dask: str | None) -> Iterator[str | None]:
    """The scheduler address for `dask`: a cluster started here for 'local'/'processes'/'cuda', else as given."""
    if not dask:
        yield None
        return
    kind, _, count = dask.partition(":")
    if kind in ("local", "processes"):
        cluster = _local_cluster(kind, count)
    elif kind == "cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as err:
            raise ValueError("--dask cuda needs dask-cuda (pip install dask-cuda)") from err
        cluster = LocalCUDACluster(threads_per_worker=1, resources=GPU, preload=[WORKER_PRELOAD],
                                   dashboard_address=None)
    else:
        yield dask
        return
    with cluster:
        yield cluster.scheduler_address


def pool_runner(address: str | None):
    """The task runner for a pair's tasks: threads here, or a client of the Dask pool at `address`."""
    if not address:
        from prefect.task_runners import ThreadPoolTaskRunner
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


def on_gpu():
    """Context for submitting model tasks: ask the Dask scheduler for one GPU (no-op on threads)."""
    import dask

    return dask.annotate(resources=GPU)


# Annotation on the pool's tasks: (tag of the archive's pool phase, pair id); see cancel_pool_work.
POOL_TAG = "dreammover_pair"
# Scheduler states of work that is not finished: waiting for inputs, queued for a worker, running.
_UNFINISHED = ("released", "waiting", "no-worker", "queued", "processing")


def tag_pool_work(run: str, pair_id: str):
    """Context: Dask tasks submitted inside it carry POOL_TAG=(run, pair_id).

    dask.annotate lives in a ContextVar, and Prefect's thread pool runs each task in a copy of
    the submitter's context, so the pair flow a run-pair task starts submits its model tasks
    with the tag (merged with the GPU=1 of on_gpu), with no change to the pair flow.
    """
    import dask

    return dask.annotate(**{POOL_TAG: (run, pair_id)})


def cancel_pool_work(address: str, run: str, pair_id: str | None = None) -> int:
    """Cancel the unfinished tasks tagged for `run` (only `pair_id`'s if given); returns how many.

    Prefect gives the archive no handle on a pair flow's Dask futures (each pair flow opens its
    own client, which releases its tasks only when the pair flow ends), so the tasks are found
    on the scheduler by their tag and cancelled there for every client (force): queued ones never
    start, and the pair flow waiting on them fails at once. A task already running on a worker
    is dropped from the scheduler, but its thread finishes its current call (Python threads
    cannot be interrupted).
    """
    from distributed import Client

    # Nested, so it is pickled by value: the scheduler needs no dreammover code to run it.
    def cancel_on_scheduler(client_id: str, dask_scheduler=None) -> int:
        keys = [ts.key for ts in list(dask_scheduler.tasks.values())
                if ts.state in _UNFINISHED and ts.who_wants and _mine((ts.annotations or {}).get(POOL_TAG))]
        if keys:
            dask_scheduler.stimulus_cancel(keys, client_id, force=True, reason="archive gave up on this work",
                                           msg=f"pair timed out or archive run interrupted ({run})")
        return len(keys)

    def _mine(tag) -> bool:
        return isinstance(tag, (tuple, list)) and tag[0] == run and pair_id in (None, tag[1])

    with Client(address, timeout=30, set_as_default=False) as client:
        return client.run_on_scheduler(cancel_on_scheduler, client.id)
