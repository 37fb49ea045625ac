"""Where work runs: the task runner for δ chunks and the default cache location."""
from __future__ import annotations

from dreammover.models import default_cache_dir


def default_cache() -> str:
    """Local cache of pipeline artifacts (LoRA, inversion, chunks, frames, clips)."""
    return str(default_cache_dir() / "pipeline-cache")


def chunk_runner(dask: str | None):
    """Task runner for the δ chunks of one pair.

    None: Prefect's thread pool in this process (chunks share the in-process model and run one
    at a time on it). 'local[:N]': an in-process Dask LocalCluster of N thread workers.
    'processes[:N]': a LocalCluster of N worker processes, each loading the model once.
    Anything else: the address of an existing Dask scheduler (e.g. tcp://dask-scheduler:8786),
    whose workers need this package installed and access to the cache storage.
    """
    if not dask:
        from prefect.task_runners import ThreadPoolTaskRunner
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    kind, _, count = dask.partition(":")
    if kind in ("local", "processes"):
        workers = int(count or 2)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=dict(
            n_workers=workers, threads_per_worker=1, processes=kind == "processes", dashboard_address=None))
    return DaskTaskRunner(address=dask)
