"""interpolate_pair: one pair -> one clip, read top-down as DESIGN §3.

    download -> prepare -> fit LoRA (cached per pair) -> invert + flow (cached per pair)
      -> denoise δ chunks (fan-out: this flow's threads, or a render-chunks subflow on Dask)
      -> decode -> encode -> upload + summary
"""
from __future__ import annotations

import tempfile
import time
from pathlib import PurePosixPath
from typing import Literal, Optional

from prefect import flow, get_run_logger, unmapped
from prefect.context import get_run_context

from dreammover.config import InterpolationConfig
from dreammover.denoise import chunks as split_chunks
from tasks.decode import decode_frames
from tasks.denoise import denoise_chunk
from tasks.encode import FORMATS, encode_clip
from tasks.ingest import download_pair
from tasks.invert import invert_pair
from tasks.lora import fit_pair_lora
from tasks.models import ModelSpec, load_model
from tasks.prepare import prepare_images
from tasks.storage import uri_exists
from tasks.upload import upload_clip, write_summary

from .runners import chunk_runner, default_cache

# What --refresh recomputes even when cached: nothing, the rendered frames (chunks + decode), or all.
Refresh = Literal["none", "frames", "all"]


def clip_format(output: str) -> str:
    fmt = PurePosixPath(output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{output}: clip must end in one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def summary_uri(output: str) -> str:
    """The per-pair JSON summary sits next to the clip: <pair>.mp4 -> <pair>.json."""
    return output.rsplit(".", 1)[0] + ".json"


def _status(future, result: dict) -> str:
    """'cached' (Prefect cache hit), 'reused' (artifact found in the cache storage) or 'computed'."""
    if future.state.name == "Cached":
        return "cached"
    return "computed" if result.get("computed") else "reused"


def run_cached(task, refresh: bool, **params) -> tuple[dict, str]:
    """Submit a cached task and wait; if Prefect's cache record outlived its artifact, recompute it."""
    # refresh: skip Prefect's cache record and the artifact already in the cache storage.
    params = {**params, "recompute": refresh}
    future = (task.with_options(refresh_cache=True) if refresh else task).submit(**params)
    result = future.result()
    if result.get("uri") and not uri_exists(result["uri"]):
        get_run_logger().warning("%s: cached artifact %s is gone; recomputing", task.name, result["uri"])
        future = task.with_options(refresh_cache=True).submit(**params)
        result = future.result()
    return result, _status(future, result)


def map_chunks(state: dict, lora: dict, model: ModelSpec, config: InterpolationConfig, cache: str,
               refresh: bool = False) -> list[dict]:
    """Fan the δ values out as chunks of frames_per_batch on the current flow's task runner."""
    parts = split_chunks(config.deltas, config.frames_per_batch)
    task = denoise_chunk.with_options(refresh_cache=True) if refresh else denoise_chunk
    futures = task.map(state=unmapped(state), lora=unmapped(lora), deltas=parts, model=unmapped(model),
                       config=unmapped(config), cache=unmapped(cache), recompute=unmapped(refresh))
    results = []
    for future, part in zip(futures, parts):
        result = future.result()
        if not uri_exists(result["uri"]):  # Prefect's record outlived the artifact (see run_cached)
            future = denoise_chunk.with_options(refresh_cache=True).submit(
                state=state, lora=lora, deltas=part, model=model, config=config, cache=cache)
            result = future.result()
        results.append({**result, "status": _status(future, result)})
    return results


@flow(name="render-chunks")
def render_chunks(state: dict, lora: dict, model: ModelSpec, config: InterpolationConfig, cache: str,
                  refresh: bool = False) -> list[dict]:
    """The chunk fan-out as a subflow, so it can have its own task runner (Dask) in another place."""
    return map_chunks(state, lora, model, config, cache, refresh)


@flow(name="interpolate-pair")
def interpolate_pair(image0: str, image1: str, output: str = "out.mp4",
                     config: InterpolationConfig = InterpolationConfig(), model: ModelSpec = ModelSpec(),
                     fps: float = 10.0, cache: Optional[str] = None, dask: Optional[str] = None,
                     refresh: Refresh = "none", pair_id: Optional[str] = None) -> dict:
    """Two photos (local paths or s3:// URIs) -> one clip at `output` plus `<output stem>.json`.

    cache: where LoRA / inversion / chunk / frame artifacts live (local folder or s3:// prefix;
    default $DREAMMOVER_HOME/pipeline-cache). dask: None (threads), 'local[:N]', 'processes[:N]'
    or a scheduler address for the δ chunks.
    """
    start = time.perf_counter()
    cache, fmt = cache or default_cache(), clip_format(output)
    with tempfile.TemporaryDirectory(prefix="dreammover-pair-") as workdir:
        local0, local1 = download_pair(image0, image1, workdir)
        prepared = prepare_images(local0, local1, config, cache, sources=(image0, image1))
    identity = load_model(model)

    common = dict(prepared=prepared, model=model, identity=identity, config=config, cache=cache)
    lora, lora_status = run_cached(fit_pair_lora, refresh == "all", **common)
    state, state_status = run_cached(invert_pair, refresh == "all", lora=lora, **common)

    # Without Dask the chunks map on this flow's thread pool (no subflow to start and stop).
    render = render_chunks.with_options(task_runner=chunk_runner(dask)) if dask else map_chunks
    rendered = render(state, lora, model, config, cache, refresh=refresh != "none")
    frames, frames_status = run_cached(decode_frames, refresh != "none", chunks=rendered, prepared=prepared,
                                       model=model, config=config, cache=cache)
    clip = encode_clip(frames, fps, fmt, cache)
    written = upload_clip(clip["uri"], output)

    summary = {
        "pair": pair_id or PurePosixPath(output).stem, "status": "done", "output": written,
        "inputs": {"image0": image0, "image1": image1}, "frames": clip["frames"], "fps": fps, "format": fmt,
        "size": [prepared["width"], prepared["height"]], "model": identity, "config": config.model_dump(),
        "stages": {
            "lora": _stage(lora_status, lora),
            "inversion": _stage(state_status, state),
            "denoise": {"chunks": len(rendered), "computed": sum(r["status"] == "computed" for r in rendered),
                        "unet_evals": sum(r["unet_evals"] for r in rendered if r["status"] == "computed"),
                        "workers": sorted({r["worker"] for r in rendered if r["status"] == "computed"})},
            "decode": {"status": frames_status},
        },
        "cache": {"root": cache, "lora": lora["uri"], "inversion": state["uri"], "frames": frames["uri"]},
        "flow_run_id": str(get_run_context().flow_run.id),
        "seconds": round(time.perf_counter() - start, 3),
    }
    write_summary(summary, summary_uri(written))
    get_run_logger().info("%s: %d frames -> %s (LoRA %s, inversion %s, %d/%d chunks rendered)", summary["pair"],
                          clip["frames"], written, lora_status, state_status,
                          summary["stages"]["denoise"]["computed"], len(rendered))
    return summary


def _stage(status: str, result: dict) -> dict:
    """UNet evaluations are counted only where the work happened in this run."""
    ran = status == "computed"
    return {"status": status, "unet_evals": result.get("unet_evals", 0) if ran else 0,
            "seconds": result.get("seconds", 0.0) if ran else 0.0}
