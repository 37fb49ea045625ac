"""DreamMotion (restyle a clip with text) as a pipeline task on the GPU pool.

    restyle-clip (GPU pool; cached: frames key + T2V model identity + both prompts + mask hash
                  + every RestyleConfig field) -> the edited frames, as a FramesArtifact

The text-to-video model lives in the same process-wide holder as DreamMover's and SVD's
(`dreammover_tasks.models.MODELS`), which keeps both resident (DREAMMOVER_RESIDENT_MODELS, default 2): a
pair that interpolates and then restyles reloads neither for the next pair (docs/pipeline.md, "Resident models").
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

import dreammover
from dreammover.restyle import DEFAULT_T2V, RestyleConfig
from dreammover.restyle.cli import DEFAULT_SOURCE_PROMPT

from .artifacts import digest, get_images, get_tensors, images_hash, put_images, put_tensors
from .models import MODELS, ModelSpec, placement
from .results import FramesArtifact, LoadedModelInfo, RestyledFrames, RestyleMask, TaskRun
from .retry import retry_options
from .storage import open_storage


class RestyleSettings(BaseModel):
    """What `run-pair --restyle-*` asks for: the prompts, the text-to-video model, and the method's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    source: str = DEFAULT_SOURCE_PROMPT
    model: str = DEFAULT_T2V
    config: RestyleConfig = RestyleConfig()

    def fingerprint(self) -> dict:
        """Everything that changes the edited clip (the model by its spec; its weights by identity in the key)."""
        return {"target": self.target, "source": self.source, "model": self.model,
                "config": self.config.fingerprint()}


class LoadedT2V:
    """The resident text-to-video model of a worker (named `dm` like LoadedModel's, for the holder).

    An edit sets key-capturing attention processors and backpropagates into the latents; after every
    edit, raised or not, the UNet gets its own processors back and no parameter asks for gradients, so
    the next task finds the model as loaded (the holder also drops it after a failure).
    """

    def __init__(self, spec: ModelSpec):
        from dreammover.restyle import load_t2v

        self.spec = spec
        self.dm = load_t2v(spec.model, device=spec.device, dtype=spec.dtype)
        self._processors = dict(self.dm.unet.attn_processors)

    @property
    def identity(self) -> str:
        return self.dm.identity

    def restore(self) -> None:
        """The state it was loaded in: the original attention processors, no gradients on parameters."""
        self.dm.unet.set_attn_processor(dict(self._processors))
        for module in (self.dm.unet, self.dm.vae, self.dm.text_encoder):
            module.requires_grad_(False)


def restyle_key(frames_key: str, identity: str, settings: RestyleSettings, mask_key: Optional[str],
                cache: str) -> str:
    """The edited frames' content key: the input frames (their content key), the weights, prompts, mask, settings."""
    return digest("restyle", dreammover.__version__, frames_key, identity, settings.source, settings.target,
                  mask_key, settings.config.fingerprint(), cache)


def store_mask(cache: str, mask: np.ndarray) -> RestyleMask:
    """A mask (float (N,H,W) in [0,1], or one (H,W) for every frame) stored once under its content hash."""
    mask = np.ascontiguousarray(mask, dtype=np.float32)
    key = images_hash([mask])
    import torch

    uri = put_tensors(cache, f"masks/{key}.safetensors", {"mask": torch.from_numpy(mask)}, overwrite=False)
    return RestyleMask(key=key, uri=uri)


def store_frames(cache: str, frames: list[np.ndarray]) -> FramesArtifact:
    """A clip's uint8 frames (e.g. a user's upload) stored once under their pixel hash, ready for restyle-clip."""
    key = images_hash(frames)
    uri = put_images(cache, f"frames/{key}.safetensors", list(frames), overwrite=False)
    return FramesArtifact(key=key, uri=uri, count=len(frames))


@task(name="restyle-clip", cache_policy=NO_CACHE, **retry_options())
def restyle_clip(frames: FramesArtifact, settings: RestyleSettings, model: ModelSpec, cache: str,
                 mask: Optional[RestyleMask] = None, recompute: bool = False) -> RestyledFrames:
    """DreamMotion on `frames` (dreammover.restyle.restyle) on the worker's resident T2V model; the edited
    frames are reused when the cache storage already holds them (no UNet work), recompute: edit anew."""
    with MODELS.use(model, LoadedT2V) as m:  # loaded the first time only: its identity keys the result
        loaded = LoadedModelInfo(identity=m.identity, run=TaskRun(computed=True, **placement()))
    key = restyle_key(frames.key, loaded.identity, settings, mask.key if mask else None, cache)
    name, store = f"restyled/{key}.safetensors", open_storage(cache)
    out = RestyledFrames(model=loaded, frames=FramesArtifact(key=key, uri=store.uri(name), count=frames.count),
                         settings=settings.fingerprint())
    if store.exists(name) and not recompute:
        get_run_logger().info("reusing restyled frames %s", key[:12])
        return out
    images = get_images(frames.uri)  # read before taking the model: a storage error then costs no reload
    weights = get_tensors(mask.uri)[0]["mask"].numpy() if mask else None
    from dreammover.restyle import restyle, restyle_preflight

    with MODELS.use(model, LoadedT2V) as m:
        if m.identity != loaded.identity:  # another model would poison the key
            raise RuntimeError(f"model identity changed under a cache key: loaded {m.identity!r}, key has "
                               f"{loaded.identity!r}")
        h, w = images[0].shape[:2]
        get_run_logger().info("plan: %s", restyle_preflight(m.dm, len(images), h, w, settings.config).summary())
        start = time.perf_counter()
        try:
            result = restyle(m.dm, images, settings.source, settings.target, mask=weights, config=settings.config,
                             progress=_log_progress())
        finally:
            m.restore()
        seconds = time.perf_counter() - start
    put_images(cache, name, result.frames, overwrite=recompute)  # content key: the first writer wins
    iterations = len(result.losses)
    get_run_logger().info("restyled %d frames to %r in %.1fs (%d iterations)", len(result.frames), settings.target,
                          seconds, iterations)
    # One batched guided UNet call per iteration (both branches, with and without the prompt).
    run = TaskRun(computed=True, unet_evals=iterations, seconds=seconds, **placement())
    done = out.frames.model_copy(update={"count": len(result.frames), "run": run,
                                         "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()}})
    return out.model_copy(update={"frames": done, "peak_bytes": int(result.peak_bytes or 0)})


def _log_progress():
    """Log the iterations about every 10 %, so a long edit shows where it is."""
    log = get_run_logger()

    def report(done: int, total: int) -> None:
        if done % max(1, total // 10) == 0 or done == total:
            log.info("restyle %d/%d", done, total)

    return report
