"""Step 12 as a task: VAE-decode all chunks into the clip's frames, in clip order."""
from __future__ import annotations

import torch
from prefect import get_run_logger, task

from dreammover.config import InterpolationConfig

from .artifacts import cached, frames_key, get_images, get_tensors, put_images
from .models import MODELS, ModelSpec, placement
from .retry import halving_on_oom, retry_options
from .storage import open_storage


def _key(p: dict) -> str:
    return frames_key([c["key"] for c in p["chunks"]], p["config"])


@task(name="decode-frames", **cached("frames", _key), **retry_options())
def decode_frames(chunks: list[dict], prepared: dict, model: ModelSpec, config: InterpolationConfig,
                  cache: str, recompute: bool = False) -> dict:
    """uint8 frames [end0, frames..., end1] as one safetensors URI."""
    key = frames_key([c["key"] for c in chunks], config)
    name, store = f"frames/{key}.safetensors", open_storage(cache)
    count = 2 + sum(len(c["deltas"]) for c in chunks)
    out = {"key": key, "uri": store.uri(name), "count": count, "computed": False}
    if store.exists(name) and not recompute:
        return out  # a cache hit needs none of the chunk latents: don't download them
    parts = [get_tensors(c["uri"])[0]["latents"] for c in chunks]
    # Every chunk carries both endpoints (identical by construction); decode them once.
    latents = torch.cat([parts[0][:2], *[p[2:] for p in parts]])
    with MODELS.use(model) as m:
        frames = _decode_fitting(m.dm, latents.to(m.dm.dtype), config.decode_batch)
    if config.keep_inputs:
        frames[0], frames[1] = get_images(prepared["uri"])
    clip = [frames[0], *frames[2:], frames[1]]
    put_images(cache, name, clip, overwrite=recompute)  # first writer wins, unless asked to recompute
    get_run_logger().info("decoded %d frames", len(clip))
    return {**out, **placement(), "computed": True}


def _decode_fitting(dm, latents: torch.Tensor, batch: int):
    """dm.decode, halving the VAE batch on out-of-memory (the frames do not depend on it)."""
    return halving_on_oom(lambda b: dm.decode(latents, b), batch, dm.device,
                          lambda b: get_run_logger().warning("out of memory: decoding %d frames at a time", b))
