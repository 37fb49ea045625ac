"""The documented in-process model cache: a worker process loads each model once and keeps up to N resident.

Loading SD1.5 takes seconds and gigabytes, so every model task in a process (each δ chunk of
every pair) reuses the same `DreamMover`. On the GPU pool that process is a long-lived Dask
worker (one per GPU, `resources={"GPU": 1}`, see tasks/gpu_worker.py), so the model stays
resident across pairs. The UNet carries mutable state (the active LoRA adapter), so tasks use
it under one lock: within a process one model task runs at a time, which is also what one GPU
can do. Up to `DREAMMOVER_RESIDENT_MODELS` models (default 2: DreamMover and the restyle T2V model,
or SVD) stay loaded side by side, so a pair that interpolates and then restyles does not reload
either; asking for another one evicts the least recently used first (its memory freed before the
load), and 1 keeps a single model per GPU for small cards (docs/pipeline.md, "Resident models").
A task that raises inside `use` drops the model it used, and only that one: its state (a
half-fitted adapter, the name of the active LoRA) is unknown, and the next task must not render
with it; the other resident models were not touched by the failed task (DESIGN §9).
"""
from __future__ import annotations

import gc
import logging
import os
import socket
import threading
from collections import Counter, OrderedDict
from contextlib import contextmanager
from typing import Iterator, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from dreammover.models import DEFAULT_MODEL

from .retry import retry_options


class ModelSpec(BaseModel):
    """Which weights to run, where: the in-process cache key (model id/path, VAE, device, dtype)."""

    model_config = ConfigDict(frozen=True)

    model: str = DEFAULT_MODEL
    vae: Optional[str] = None
    device: Optional[str] = None
    dtype: Optional[str] = None


class LoadedModel:
    """A DreamMover plus which LoRA is active on its UNet (so chunks of one pair do not reload it)."""

    def __init__(self, spec: ModelSpec):
        from dreammover import DreamMover

        self.spec = spec
        self.dm = DreamMover.from_pretrained(spec.model, vae=spec.vae, device=spec.device, dtype=spec.dtype)
        self.active_lora: str | None = "<unset>"

    @property
    def identity(self) -> str:
        return self.dm.components.identity

    def activate_lora(self, uri: str | None, rank: int = 16) -> None:
        """Make the pair's LoRA (a safetensors URI) active, or the plain UNet for None."""
        if uri == self.active_lora:
            return
        if uri is None:
            self.dm.use_lora(None, rank)
        else:
            from .artifacts import get_tensors

            state, meta = get_tensors(uri)
            self.dm.use_lora(state, int(meta.get("rank", rank)))
        self.active_lora = uri

    def forget_lora(self) -> None:
        """Called after fit_lora changed the adapter behind our back."""
        self.active_lora = "<unset>"


class ResidentSettings(BaseSettings):
    """How many models one worker process keeps loaded at once (env DREAMMOVER_RESIDENT_MODELS)."""

    model_config = SettingsConfigDict(env_prefix="DREAMMOVER_", case_sensitive=False, extra="ignore")

    # 2 holds DreamMover beside the restyle (T2V) or SVD model; 1 is one model per GPU, for small cards.
    resident_models: int = Field(2, ge=1)


def resident_capacity() -> int:
    """DREAMMOVER_RESIDENT_MODELS, validated: a bad value is one clear line, not a traceback."""
    try:
        return ResidentSettings().resident_models
    except ValidationError as err:
        raise ValueError(f"DREAMMOVER_RESIDENT_MODELS must be a whole number >= 1 "
                         f"(got {os.environ.get('DREAMMOVER_RESIDENT_MODELS')!r})") from err


class ModelCache:
    """Up to `capacity` loaded models per process (least recently used evicted first), used by one task at a time.

    capacity None reads DREAMMOVER_RESIDENT_MODELS at each load, so a worker follows its environment.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError(f"a model cache holds at least one model (got capacity={capacity})")
        self._lock = threading.RLock()
        self._resident: OrderedDict[tuple, LoadedModel] = OrderedDict()  # least recently used first
        self._capacity = capacity
        self.loads = 0  # models loaded by this process: recorded in every model task's result
        self.loads_by_kind: Counter[str] = Counter()  # the same, per loader class name (LoadedModel, LoadedT2V, ...)

    @property
    def capacity(self) -> int:
        return self._capacity if self._capacity is not None else resident_capacity()

    def resident(self) -> list:
        """The loaded models, least recently used first."""
        with self._lock:
            return list(self._resident.values())

    @contextmanager
    def use(self, spec: ModelSpec, loader=None) -> Iterator[LoadedModel]:
        """The resident model for `spec`, built by `loader` (default LoadedModel; tasks.svd's LoadedSVD)."""
        loader = loader or LoadedModel
        key = (loader, spec)
        with self._lock:
            current = self._resident.get(key)
            if current is not None and _retrained(current):
                self._drop(key)  # weights changed on disk: reload, never serve the old ones
                current = None
            if current is None:
                capacity = self.capacity
                while len(self._resident) >= capacity:  # free the GPU before the next load, not after
                    self._drop(next(iter(self._resident)))
                current = loader(spec)
                self._resident[key] = current
                self.loads += 1
                self.loads_by_kind[loader.__name__] += 1
            self._resident.move_to_end(key)
            try:
                yield current
            except BaseException as err:  # an OOM, a cancellation, a bug: the model's state is unknown
                self._drop_after_failure(key, current, err)
                raise

    def _drop_after_failure(self, key: tuple, failed: "LoadedModel", err: BaseException) -> None:
        """Forget the model a task failed on (the next task loads fresh weights), saying so once."""
        if self._resident.get(key) is failed:
            self._drop(key)
        _logger().warning("dropped the resident model %s after %s in a model task (%s): the next task "
                          "loads fresh weights", failed.spec.model, type(err).__name__,
                          str(err).splitlines()[0][:200] if str(err) else "no message")

    def _drop(self, key: tuple) -> None:
        model = self._resident.pop(key, None)
        if model is None:
            return
        device = model.dm.device  # LoadedSVD and LoadedT2V name their backend `dm` too
        del model
        gc.collect()
        if device.type == "cuda":  # give the memory back to the driver before another model loads
            import torch
            torch.cuda.empty_cache()

    def __reduce__(self):
        # Task functions are shipped to Dask workers by value, with the globals they use; the cache
        # must arrive as "that process's cache", not as a copy of this one (with its lock).
        return (_process_cache, ())

    def clear(self) -> None:
        with self._lock:
            for key in list(self._resident):
                self._drop(key)


# The one process-wide mutable global, on purpose: see the module docstring.
MODELS = ModelCache()


def _process_cache() -> ModelCache:
    return MODELS


def _retrained(current) -> bool:
    """Whether the resident model's files changed since it was loaded (a model retrained in place): serving
    the old weights would render them again and again under a summary that no longer matches."""
    from dreammover.model_identity import visible_identity, weights_changed
    from dreammover.models import default_cache_dir

    identity, source = getattr(current, "identity", None), getattr(current.spec, "model", None)
    if not isinstance(identity, str) or not isinstance(source, str):
        return False  # a loader that names no weights: nothing to compare
    return weights_changed(identity, visible_identity(source, default_cache_dir()))


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect task's logger when in a run (the warning shows in the run's logs), else this module's."""
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def worker_name() -> str:
    """The Dask worker address when running on one, else host:pid (recorded so fan-out is visible)."""
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def placement() -> dict:
    """Where a model task ran and how many models that process has loaded (the pool's load count)."""
    return {"worker": worker_name(), "model_loads": MODELS.loads}


@task(name="load-model", cache_policy=NO_CACHE, **retry_options())
def load_model(model: ModelSpec) -> "LoadedModelInfo":
    """Load (once per worker process) and return the model identity that goes into every cache key."""
    from .results import LoadedModelInfo, TaskRun

    with MODELS.use(model) as m:
        return LoadedModelInfo(identity=m.identity, run=TaskRun(computed=True, **placement()))
