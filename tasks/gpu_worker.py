"""The GPU pool's worker side: a Dask preload that makes each worker a long-lived model host.

Start one worker per GPU (deploy/compose.yaml, deploy/smoke.sh):

    CUDA_VISIBLE_DEVICES=0 dask worker tcp://scheduler:8786 --nthreads 1 --resources GPU=1 \\
        --preload dreammover_tasks.gpu_worker

The worker process keeps the model it loaded (tasks/models.py) across every pair and chunk it
runs. `DREAMMOVER_PRELOAD_MODEL` (a model id/path, e.g. 'tiny') loads it at start instead of on
the first task; `DREAMMOVER_PRELOAD_BACKEND=svd` makes that an SVD keyframe model (e.g.
'tiny-svd'). `DREAMMOVER_PRELOAD_RESTYLE_MODEL` (a text-to-video model, e.g. 'tiny-t2v') also
loads the restyle model at start, beside it: `DREAMMOVER_RESIDENT_MODELS` (default 2) models stay
resident together (tasks/models.py). On shutdown the models are dropped; if the worker crashes,
the process and its GPU memory go with it, the nanny starts a fresh one, and the scheduler gives
its task to a worker that is alive (Dask's own resource accounting frees the GPU slot).
"""
from __future__ import annotations

import logging
import os

from distributed.diagnostics.plugin import WorkerPlugin

log = logging.getLogger("dreammover.gpu_worker")


class ModelHost(WorkerPlugin):
    """Pins torch's threads to the worker's, optionally preloads the model and the restyle model, releases them."""

    name = "dreammover-model-host"

    def __init__(self, preload: str | None = None, backend: str = "dreammover", restyle: str | None = None):
        self.preload, self.backend, self.restyle = preload, backend, restyle

    def setup(self, worker) -> None:
        import torch

        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", worker.state.nthreads))))
        if self.preload:
            from .models import MODELS, ModelSpec

            loader = None
            if self.backend == "svd":  # the same holder keeps either kind, one model per GPU
                from .svd import LoadedSVD
                loader = LoadedSVD
            with MODELS.use(ModelSpec(model=self.preload), loader) as m:
                log.info("worker %s: preloaded %s", worker.address, m.identity)
        if self.restyle:
            from .models import MODELS, ModelSpec
            from .restyle import LoadedT2V

            if self.preload and MODELS.capacity < 2:  # the second load evicts the first: say so, once, at start
                log.warning("worker %s: DREAMMOVER_RESIDENT_MODELS=%d keeps one model; the restyle model %s "
                            "replaces the preloaded %s", worker.address, MODELS.capacity, self.restyle, self.preload)
            with MODELS.use(ModelSpec(model=self.restyle), LoadedT2V) as m:
                log.info("worker %s: preloaded the restyle model %s", worker.address, m.identity)

    def teardown(self, worker) -> None:
        from .models import MODELS

        MODELS.clear()


async def dask_setup(worker) -> None:
    """Entry point of `dask worker --preload dreammover_tasks.gpu_worker`."""
    await worker.plugin_add(ModelHost(os.environ.get("DREAMMOVER_PRELOAD_MODEL") or None,
                                      os.environ.get("DREAMMOVER_PRELOAD_BACKEND", "dreammover"),
                                      os.environ.get("DREAMMOVER_PRELOAD_RESTYLE_MODEL") or None))
