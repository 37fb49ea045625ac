"""The SVD keyframe backend (Generative Inbetweening, Wang et al. 2024) as pipeline tasks.

    load-svd-model (GPU pool, resident per worker) -> prepare-svd-images (orchestration side)
      -> render-svd-pair (GPU pool; cached: pair hash + model identity + every SVDKeyframeConfig field)

The method has no per-pair stage worth caching on its own at pipeline level (encoding the
keyframes costs one CLIP and one VAE pass), so the unit of caching and of GPU work is the whole
clip's frames. The model lives in the same process-wide holder as DreamMover's
(`dreammover_tasks.models.MODELS`), so a worker keeps at most one model of either kind resident.
"""
from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

import dreammover
from dreammover.backends.svd_config import SVDKeyframeConfig
from dreammover.events import Event

from .artifacts import digest, get_images, put_images
from .models import MODELS, ModelSpec, placement
from .prepare import store_prepared
from .results import FramesArtifact, LoadedModelInfo, Prepared, TaskRun
from .retry import retry_options
from .storage import open_storage


class LoadedSVD:
    """The resident SVD keyframe backend of a worker process (named `dm` like LoadedModel's, for the holder)."""

    def __init__(self, spec: ModelSpec):
        from dreammover.backends import load_backend

        self.spec = spec
        self.dm = load_backend("svd", spec.model, vae=spec.vae, device=spec.device, dtype=spec.dtype)

    @property
    def identity(self) -> str:
        return self.dm.components.identity


def svd_frames_key(pair_hash: str, identity: str, config: SVDKeyframeConfig, cache: str) -> str:
    """Every SVDKeyframeConfig field changes the frames (decode_chunk too: the temporal VAE mixes a chunk's frames)."""
    return digest("svd-frames", dreammover.__version__, pair_hash, identity, config.model_dump(), cache)


@task(name="load-svd-model", cache_policy=NO_CACHE, **retry_options())
def load_svd_model(model: ModelSpec) -> LoadedModelInfo:
    """Load (once per worker process) the SVD backend; its identity keys the cache, its native size the frame."""
    with MODELS.use(model, LoadedSVD) as m:
        return LoadedModelInfo(identity=m.identity, native_size=m.dm.components.native_size,
                               run=TaskRun(computed=True, **placement()))


@task(name="prepare-svd-images", cache_policy=NO_CACHE, **retry_options())
def prepare_svd_images(image0: str, image1: str, config: SVDKeyframeConfig, cache: str) -> Prepared:
    """Both photos at the backend's working frame (16:9 crop or the inputs' aspect), stored under their hash.

    `config.size` must be resolved (not None). Not cached, like prepare-images: it notices changed photos.
    """
    from dreammover.backends.svd_keyframe import fit_keyframes

    return store_prepared(lambda a, b: fit_keyframes(a, b, config), image0, image1, cache, "keyframes")


@task(name="render-svd-pair", cache_policy=NO_CACHE, **retry_options())
def render_svd_pair(prepared: Prepared, model: ModelSpec, identity: str, config: SVDKeyframeConfig, cache: str,
                    recompute: bool = False) -> FramesArtifact:
    """Alg. 2 on the pair's keyframes: N+2 uint8 frames as one safetensors URI (reused when already stored)."""
    key = svd_frames_key(prepared.hash, identity, config, cache)
    name, store = f"frames/{key}.safetensors", open_storage(cache)
    out = FramesArtifact(key=key, uri=store.uri(name), count=config.clip_frames)
    if store.exists(name) and not recompute:
        get_run_logger().info("reusing SVD frames %s", key[:12])
        return out
    with MODELS.use(model, LoadedSVD) as m:
        if m.identity != identity:  # keys were computed from `identity`: another model would poison the cache
            raise RuntimeError(f"model identity changed under a cache key: loaded {m.identity!r}, key has "
                               f"{identity!r}")
        im0, im1 = get_images(prepared.uri)
        start = time.perf_counter()
        result = m.dm.interpolate(im0, im1, config, on_event=_log_progress())
        seconds = time.perf_counter() - start
    put_images(cache, name, result.frames, overwrite=recompute)  # content key: the first writer wins
    get_run_logger().info("rendered %d frames with SVD in %.1fs", len(result.frames), seconds)
    run = TaskRun(computed=True, unet_evals=int(sum(result.unet_evals.values())), seconds=seconds, **placement())
    return out.model_copy(update={"count": len(result.frames), "run": run,
                                  "stage_seconds": {k: round(v, 3) for k, v in result.seconds.items()}})


def _log_progress():
    """Log the sampling steps (about every 10 %) and the decode, so a long render shows where it is."""
    log = get_run_logger()

    def report(ev: Event) -> None:
        every = max(1, ev.total // 10)
        if ev.stage != "encode" and (ev.step % every == 0 or ev.step == ev.total):
            log.info("%s %d/%d", ev.stage, ev.step, ev.total)

    return report
