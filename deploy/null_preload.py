"""Dask preload of the null-model benchmark: tasks.gpu_worker's model host, with the null model as the loader.

    dask worker ... --preload deploy.null_preload      (deploy/bench_pool.py --null-model starts its pool so)

`dreammover_tasks.models.ModelCache.use` builds a model with the module attribute `dreammover_tasks.models.LoadedModel`,
looked up at call time; `install()` points that attribute at `NullLoadedModel`, whose `.dm` is a
`deploy.null_model.NullDreamMover`. Everything else (thread pinning, the preloaded model, its
release on close) is the real preload's, which this one then runs.
"""
from __future__ import annotations

from dreammover_tasks import models
from dreammover_tasks.models import LoadedModel

from deploy.null_model import NullDreamMover


class NullLoadedModel(LoadedModel):
    """A LoadedModel whose DreamMover is the null one: nothing is loaded, the identity is stable per source."""

    def __init__(self, spec: models.ModelSpec):
        self.spec, self.dm, self.active_lora = spec, NullDreamMover(spec.model), "<unset>"


def install() -> None:
    """Make every later model load in this process a null model (idempotent)."""
    models.LoadedModel = NullLoadedModel
    if any(type(m) is not NullLoadedModel for m in models.MODELS.resident()):
        models.MODELS.clear()  # a real model loaded before: never serve it under the null loader


async def dask_setup(worker) -> None:
    """Entry point of `--preload deploy.null_preload`: install, then the real preload (tasks.gpu_worker)."""
    from dreammover_tasks import gpu_worker

    install()
    await gpu_worker.dask_setup(worker)
