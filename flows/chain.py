"""A chained burst -> one clip (issue #18): the pair flow's steps per segment, then one clip and one summary.

    prepare each segment (consecutive keyframes, content-keyed as a pair) -> its motion (the manifest's, or
    measured on thumbnails) -> the frame budget split by motion (dreammover.chain.split_frames) -> each
    segment rendered as a pair is (its own LoRA, inversion, δ chunks, decode: content-keyed, so a burst
    a new photo extends reuses the segments it had) -> joined without repeating shared keyframes -> ONE
    clip and ONE summary, whose fingerprint covers every keyframe's version.
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Optional

from prefect import get_run_logger
from prefect.context import get_run_context

from dreammover.chain import chain_configs
from dreammover.config import InterpolationConfig
from dreammover_tasks.chain import join_chain, measure_motion
from dreammover_tasks.encode import publish_clip
from dreammover_tasks.ingest import keyframe_inputs
from dreammover_tasks.models import ModelSpec
from dreammover_tasks.prepare import prepare_images
from dreammover_tasks.restyle import RestyleSettings

from .pair import (_link, _max_by_worker, _stage, _with_restyle, clip_format, fingerprint, render_prepared,
                   restyle_frames)
from .runners import default_cache


def render_chain_clip(keyframes: list[str], output: str, config: InterpolationConfig, model: ModelSpec, fps: float,
                      cache: Optional[str], dask: Optional[str], refresh: str, pair_id: Optional[str],
                      backend: str = "dreammover", spread: int = 1, recipe: Optional[dict] = None,
                      inputs: Optional[dict] = None, motions: Optional[list[float]] = None,
                      restyle: Optional[RestyleSettings] = None) -> dict:
    """K keyframes (URIs) -> one clip at `output` with config.num_frames + K frames (restyled when asked), and its summary."""
    if backend != "dreammover":
        raise ValueError(f"a chained burst renders with the dreammover backend only (got {backend!r})")
    if motions is not None and len(motions) != len(keyframes) - 1:
        raise ValueError(f"{len(keyframes)} keyframes need {len(keyframes) - 1} motions (got {len(motions)})")
    start = time.perf_counter()
    cache, fmt = cache or default_cache(), clip_format(output)
    inputs = keyframe_inputs(keyframes, motions, known=inputs)  # the archive's listing gave them: no HEAD
    clip_id = fingerprint(keyframes[0], keyframes[-1], model, config, fps, fmt, inputs=inputs, preset=recipe,
                          restyle=restyle)
    prepared = [prepare_images(a, b, config, cache) for a, b in zip(keyframes, keyframes[1:])]
    first = prepared[0]
    for i, p in enumerate(prepared[1:], 1):
        if (p.width, p.height) != (first.width, first.height):
            raise ValueError(f"keyframe {keyframes[i]} works at {p.width}x{p.height}, the chain's first at "
                             f"{first.width}x{first.height}: a chain's photos must share one aspect ratio")
    measured = motions if motions is not None else measure_motion(prepared)
    configs = chain_configs(config, measured)
    segments = [render_prepared(p, model, c, cache, refresh, spread) for p, c in zip(prepared, configs)]
    frames = join_chain([s[2] for s in segments], cache)
    fits = [s[0] for s in segments]
    rendered = [c for s in segments for c in s[1]]
    # Reused artifacts carry no placement: count only this run's work (as the pair flow does).
    ran = [f.model.run for f in fits] + [a.run for s in segments for a in (s[0].lora, s[0].inversion, *s[1], s[2])
                                         if a.run.computed]
    summary = {
        "pair": pair_id or PurePosixPath(output).stem, "status": "done", "backend": "dreammover",
        "fingerprint": clip_id, "inputs": inputs,
        "format": fmt, "preset": (recipe or {}).get("name"), "size": [first.width, first.height],
        "model": fits[0].model.identity, "model_spec": model.model_dump(), "config": config.model_dump(),
        "keyframes": len(keyframes),
        "segments": [{"keyframes": [a, b], "frames": c.num_frames, "motion": m, "lora": _stage(f.lora.run),
                      "inversion": _stage(f.inversion.run), "lora_uri": f.lora.uri}
                     for a, b, c, m, f in zip(keyframes, keyframes[1:], configs, measured, fits)],
        "stages": {
            "lora": _merged([f.lora.run for f in fits]),
            "inversion": _merged([f.inversion.run for f in fits]),
            "denoise": {"chunks": len(rendered), "computed": sum(r.run.computed for r in rendered),
                        "unet_evals": sum(r.run.unet_evals for r in rendered),
                        "workers": sorted({r.run.worker for r in rendered if r.run.computed})},
            "decode": _merged([s[2].run for s in segments]),
        },
        "pool": {"dask": dask, "model_loads": _max_by_worker(ran), "workers": sorted({r.worker for r in ran})},
        "cache": {"root": cache, "frames": frames.uri},
        "flow_run_id": str(get_run_context().flow_run.id),
        "seconds": round(time.perf_counter() - start, 3),
    }
    frames = _with_restyle(summary, restyle_frames(frames, restyle, model, cache, refresh), frames, ran)
    clip = publish_clip(frames, fps, fmt, output, recipe, summary)  # the clip, then its summary (last)
    summary = clip.summary
    _link(summary)
    get_run_logger().info("%s: %d keyframes, %d frames -> %s (segments %s; LoRA %s)", summary["pair"],
                          len(keyframes), clip.frames, clip.uri, [c.num_frames for c in configs],
                          summary["stages"]["lora"]["status"])
    return summary


def _merged(runs) -> dict:
    """The segments' runs of one stage as one: computed if any segment computed it, with the counts summed."""
    return {"status": "computed" if any(r.computed for r in runs) else "reused",
            "computed": sum(r.computed for r in runs), "unet_evals": sum(r.unet_evals for r in runs),
            "seconds": round(sum(r.seconds for r in runs), 3)}
