"""Steps 6-11 as a task: fuse and denoise one chunk of δ values (the unit of fan-out)."""
from __future__ import annotations

import json
import os
import socket

from prefect import get_run_logger, task

from dreammover.config import InterpolationConfig
from dreammover.profiling import StageProfile
from dreammover.state import PairState

from .artifacts import cached, chunk_key, put_tensors
from .models import GPU_TAG, MODELS, ModelSpec
from .storage import open_storage, read_uri


def _key(p: dict) -> str:
    return chunk_key(p["state"]["key"], p["deltas"], p["config"])


@task(name="denoise-chunk", tags=[GPU_TAG], **cached("chunk", _key))
def denoise_chunk(state: dict, lora: dict, deltas: list[float], model: ModelSpec, config: InterpolationConfig,
                  cache: str, recompute: bool = False) -> dict:
    """Latents [2+k,C,h,w] (both endpoints, then the k frames at `deltas`) as a safetensors URI.

    Frames do not depend on how the deltas are chunked, so each chunk is keyed on its own deltas.
    """
    key = chunk_key(state["key"], deltas, config)
    name, store = f"chunks/{key}.safetensors", open_storage(cache)
    out = {"key": key, "uri": store.uri(name), "deltas": list(deltas), "computed": False, "unet_evals": 0,
           "seconds": 0.0, "worker": worker_name()}
    if store.exists(name) and not recompute:
        return out
    with MODELS.use(model) as m:
        m.activate_lora(lora["uri"], lora["rank"])
        pair = PairState.from_bytes(read_uri(state["uri"]))
        profile = StageProfile(m.dm.device)
        with profile.stage("denoise"):
            latents = m.dm.denoise(pair, deltas, config, profile)
        put_tensors(cache, name, {"latents": latents.float()}, {"deltas": json.dumps(list(deltas))})
    seconds = profile.seconds["denoise"]
    get_run_logger().info("denoised %d frame(s) at δ=%s in %.1fs on %s", len(deltas),
                          ",".join(f"{d:.3f}" for d in deltas), seconds, out["worker"])
    return {**out, "computed": True, "unet_evals": sum(profile.unet_evals.values()), "seconds": seconds}


def worker_name() -> str:
    """The Dask worker address when running on one, else host:pid (recorded so fan-out is visible)."""
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"
