"""Steps 1-12 of one pair as ONE pool task, for a pair that has a GPU to itself.

An archive with a pair per GPU (or a run without a pool) gains nothing from fanning a pair's δ
chunks out, and each pool task costs the orchestrator a Dask submit (Prefect serializes its whole
settings context) and the API a task run: so the pair's fit, chunks and decode run here in turn, the
very task functions the fan-out path submits one by one, with their content-keyed artifacts.
"""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from dreammover.config import InterpolationConfig

from .decode import decode_frames
from .denoise import denoise_chunk
from .fit_pair import fit_pair
from .models import ModelSpec
from .results import Prepared, RenderedFrames
from .retry import retry_options


@task(name="render-frames", cache_policy=NO_CACHE, **retry_options())
def render_frames(prepared: Prepared, model: ModelSpec, config: InterpolationConfig, cache: str,
                  parts: list[list[float]], refresh: str = "none") -> RenderedFrames:
    """fit-pair, denoise-chunk for each of `parts`, decode-frames on this worker; refresh: none | frames | all."""
    pair = fit_pair.fn(prepared, model, config, cache, recompute=refresh == "all")
    again = refresh != "none"
    chunks = [denoise_chunk.fn(pair.inversion, pair.lora, part, model, config, cache, recompute=again)
              for part in parts]
    frames = decode_frames.fn(chunks, prepared, model, config, cache, recompute=again)
    return RenderedFrames(pair=pair, chunks=chunks, frames=frames)
