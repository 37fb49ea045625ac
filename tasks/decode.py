"""Step 12 as a task: VAE-decode all chunks into the clip's frames, in clip order."""
from __future__ import annotations

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.config import InterpolationConfig
from dreammover.denoise import join_chunks

from .artifacts import frames_key, get_images, get_tensors, put_images
from .models import MODELS, ModelSpec, placement
from .results import ChunkArtifact, FramesArtifact, Prepared, TaskRun
from .retry import halving_on_oom, retry_options
from .storage import open_storage


@task(name="decode-frames", cache_policy=NO_CACHE, **retry_options())
def decode_frames(chunks: list[ChunkArtifact], prepared: Prepared, model: ModelSpec, config: InterpolationConfig,
                  cache: str, recompute: bool = False) -> FramesArtifact:
    """uint8 frames [end0, frames..., end1] as one safetensors object."""
    key = frames_key([c.key for c in chunks], config)
    name, store = f"frames/{key}.safetensors", open_storage(cache)
    out = FramesArtifact(key=key, uri=store.uri(name), count=2 + sum(len(c.deltas) for c in chunks))
    if store.exists(name) and not recompute:
        return out  # a hit needs none of the chunk latents: don't download them
    latents = join_chunks([get_tensors(c.uri)[0]["latents"] for c in chunks])
    inputs = get_images(prepared.uri) if config.keep_inputs else None
    with MODELS.use(model) as m:
        clip = _clip_fitting(m.dm, latents.to(m.dm.dtype), config, inputs)
    put_images(cache, name, clip, overwrite=recompute)  # first writer wins, unless asked to recompute
    get_run_logger().debug("decoded %d frames", len(clip))  # the pair flow logs one line per pair
    return out.model_copy(update={"run": TaskRun(computed=True, **placement())})


def _clip_fitting(dm, latents: torch.Tensor, config: InterpolationConfig, inputs):
    """dm.clip_frames, halving the VAE batch on out-of-memory (the frames do not depend on it)."""
    return halving_on_oom(lambda b: dm.clip_frames(latents, config.model_copy(update={"decode_batch": b}), inputs),
                          config.decode_batch, dm.device,
                          lambda b: get_run_logger().warning("out of memory: decoding %d frames at a time", b))
