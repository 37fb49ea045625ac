"""Steps 6-11 as a task: fuse and denoise one chunk of δ values (the unit of fan-out)."""
from __future__ import annotations

import json

import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.config import InterpolationConfig
from dreammover.denoise import auto_frames_per_batch
from dreammover.profiling import StageProfile
from dreammover.state import PairState

from .artifacts import chunk_key, put_tensors
from .models import MODELS, ModelSpec, placement
from .results import ChunkArtifact, InversionArtifact, LoraArtifact, TaskRun
from .retry import halving_on_oom, retry_options
from .storage import open_storage, read_uri


@task(name="denoise-chunk", cache_policy=NO_CACHE, **retry_options())
def denoise_chunk(state: InversionArtifact, lora: LoraArtifact, deltas: list[float], model: ModelSpec,
                  config: InterpolationConfig, cache: str, recompute: bool = False) -> ChunkArtifact:
    """Latents [2+k,C,h,w] (both endpoints, then the k frames at `deltas`) in the cache storage.

    Frames do not depend on how the deltas are chunked, so each chunk is keyed on its own deltas.
    """
    key = chunk_key(state.key, deltas, config)
    name, store = f"chunks/{key}.safetensors", open_storage(cache)
    out = ChunkArtifact(key=key, uri=store.uri(name), deltas=list(deltas))
    if store.exists(name) and not recompute:
        return out
    with MODELS.use(model) as m:
        m.activate_lora(lora.uri, lora.rank)
        pair = PairState.from_bytes(read_uri(state.uri))
        profile = StageProfile(m.dm.device)
        with profile.stage("denoise"):
            latents, batch = denoise_fitting(m.dm, pair, deltas, config, profile)
    # Outside the model's block: a storage error here is no reason to drop the resident model.
    # First writer wins: a chunk rendered twice at once (a retry beside its cancelled run) is one object.
    put_tensors(cache, name, {"latents": latents.float()}, {"deltas": json.dumps(list(deltas))},
                overwrite=recompute)
    run = TaskRun(computed=True, unet_evals=sum(profile.unet_evals.values()), seconds=profile.seconds["denoise"],
                  **placement())
    get_run_logger().info("denoised %d frame(s) at δ=%s in %.1fs on %s (%d per batch)", len(deltas),
                          ",".join(f"{d:.3f}" for d in deltas), run.seconds, run.worker, batch)
    return out.model_copy(update={"run": run, "frames_per_batch": batch})


def denoise_fitting(dm, pair: PairState, deltas: list[float], config: InterpolationConfig,
                    profile: StageProfile) -> tuple[torch.Tensor, int]:
    """dm.denoise, halving frames_per_batch on out-of-memory down to 1 (frames do not depend on batching).

    A chunk that does not fit even one frame at a time re-raises: the task's retry policy then
    tries again later, when the GPU may hold less.
    """
    def run(batch: int) -> tuple[torch.Tensor, int]:
        return dm.denoise(pair, deltas, config.model_copy(update={"frames_per_batch": batch}), profile), batch

    return halving_on_oom(run, first_batch(dm, pair, deltas, config), dm.device,
                          lambda batch: get_run_logger().warning(
                              "out of memory: retrying the chunk with frames_per_batch=%d", batch))


def first_batch(dm, pair: PairState, deltas: list[float], config: InterpolationConfig) -> int:
    """frames_per_batch for the chunk's first try; "auto" is resolved HERE, on the worker that holds the
    memory (the orchestrator sent len(deltas), so the memory plan of "auto" never ran on a pool worker)."""
    if config.frames_per_batch != "auto":
        return config.frames_per_batch
    limit = auto_frames_per_batch(dm.components.unet, tuple(pair.z_T.shape[-2:]), dm.device, dm.dtype)
    batches = -(-len(deltas) // limit) if deltas else 1
    return max(1, -(-len(deltas) // batches))  # balanced, as dreammover.denoise.plan_chunks splits "auto"
