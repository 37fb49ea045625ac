"""interpolate_pair: one pair -> one clip, read top-down as DESIGN §3.

    prepare: fetch + load + fit to the working size (here, on the orchestration side)
      -> on the GPU pool (one GPU per model task, the worker's resident model):
         fit pair (on the resident model): LoRA + invert + flow, the photos encoded once (content-keyed)
         -> denoise δ chunks (fanned out over the pool) -> decode
         (a pair with a GPU to itself, spread=1: the same three steps in ONE pool task, render-frames)
      -> encode -> clip under a temporary key, renamed into place -> summary (last) -> link artifact

    backend="svd" (Generative Inbetweening, dreammover/backends): download -> load the SVD model
      (resident per worker) -> prepare the keyframes -> render-svd-pair (content-keyed) -> the same encode/upload/summary
"""
from __future__ import annotations

import time
from pathlib import PurePosixPath
from typing import Literal, Optional, Union

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import create_link_artifact
from prefect.context import FlowRunContext, get_run_context

from dreammover.backends import config_type
from dreammover.backends.svd_config import SVDKeyframeConfig
from dreammover.config import InterpolationConfig
from dreammover.denoise import chunks as split_chunks
from dreammover_tasks.artifacts import clip_fingerprint
from dreammover_tasks.decode import decode_frames
from dreammover_tasks.denoise import denoise_chunk
from dreammover_tasks.fit_pair import fit_pair
from dreammover_tasks.encode import FORMATS, publish_clip
from dreammover_tasks.ingest import photo_inputs
from dreammover_tasks.names import artifact_key
from dreammover_tasks.models import ModelSpec
from dreammover_tasks.prepare import prepare_images
from dreammover_tasks.render import render_frames
from dreammover_tasks.restyle import RestyleSettings, restyle_clip
from dreammover_tasks.results import ChunkArtifact, FittedPairArtifacts, FramesArtifact, RestyledFrames, TaskRun
from dreammover_tasks.svd import load_svd_model, prepare_svd_images, render_svd_pair
from dreammover_tasks.upload import summary_uri  # noqa: F401 - flows.pair.summary_uri is public API

from .runners import default_cache, gpu_pool, on_gpu, pool_runner

# What --refresh recomputes even when cached: nothing, the rendered frames (chunks + decode), or all.
Refresh = Literal["none", "frames", "all"]
PAIR_TIMEOUT = 6 * 3600  # seconds; a pair that takes longer is stuck (SD1.5, 32 frames: minutes)
Backend = Literal["dreammover", "svd"]
AnyConfig = Union[InterpolationConfig, SVDKeyframeConfig]


def clip_format(output: str) -> str:
    fmt = PurePosixPath(output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{output}: clip must end in one of {', '.join('.' + f for f in FORMATS)}")
    return fmt


def plan_chunks(config: InterpolationConfig, spread: int = 1) -> list[list[float]]:
    """The δ values of the clip, split into the chunks that fan out over the pool (one task each).

    A number `frames_per_batch` fixes the chunk size. "auto" splits only for distribution: into
    `spread` near-equal chunks (one per GPU this pair may use), since every chunk re-denoises both
    endpoints (+2 latents per chunk) and costs a task round-trip, and the worker sizes its own
    batches to its memory anyway. The frames do not depend on the split.
    """
    deltas = config.deltas
    if config.frames_per_batch != "auto":
        return split_chunks(deltas, config.frames_per_batch)
    parts = max(1, min(spread, len(deltas)))
    return split_chunks(deltas, -(-len(deltas) // parts)) if deltas else []


def fingerprint(image0: str, image1: str, model: ModelSpec, config: AnyConfig, fps: float,
                fmt: str, backend: Backend = "dreammover", inputs: Optional[dict] = None,
                preset: Optional[dict] = None, restyle: Optional[RestyleSettings] = None) -> str:
    # DreamMover's fingerprint is unchanged (summaries written before backends existed stay valid);
    # any other backend is part of the model, so switching backends re-renders.
    spec = model.model_dump() if backend == "dreammover" else {**model.model_dump(), "backend": backend}
    if restyle is not None:  # only when asked: clips made without it keep their fingerprint
        spec = {**spec, "restyle": restyle.fingerprint()}
    return clip_fingerprint(inputs or photo_inputs(image0, image1), spec, config, fps, fmt, preset)


def clip_preset(name: Optional[str], output: str) -> Optional[dict]:
    """The named clip preset (reel, story, ...: dreammover/presets.py) with the output's format, as a dict;
    None without one. An unknown name is a ValueError before any work."""
    if not name:
        return None
    from dreammover.presets import for_path, get_preset

    return for_path(get_preset(name), output).model_dump(mode="json")


def backend_config(backend: str, config) -> AnyConfig:
    """`config` as the backend's config type (a deployment passes a dict; a union may pick the other type)."""
    cls = config_type(backend)  # ValueError for an unknown backend
    if isinstance(config, cls):
        return config
    data = config.model_dump(exclude_unset=True) if hasattr(config, "model_dump") else dict(config or {})
    return cls.model_validate(data)


def on_pool(task, **params):
    """Run one model task on the GPU pool (or here, without one) and wait for its typed result."""
    with on_gpu():
        return task.submit(**params).result()


def map_chunks(pair: FittedPairArtifacts, model: ModelSpec, config: InterpolationConfig, cache: str,
               refresh: bool = False, spread: int = 1) -> list[ChunkArtifact]:
    """Fan the δ chunks out over the pool (Dask places each on a free GPU worker) and collect them in order."""
    with on_gpu():
        futures = denoise_chunk.map(state=unmapped(pair.inversion), lora=unmapped(pair.lora),
                                    deltas=plan_chunks(config, spread), model=unmapped(model),
                                    config=unmapped(config), cache=unmapped(cache), recompute=unmapped(refresh))
    return [future.result() for future in futures]


def _on_pool() -> bool:
    from prefect_dask import DaskTaskRunner

    ctx = FlowRunContext.get()
    return ctx is not None and isinstance(ctx.task_runner, DaskTaskRunner)


@flow(name="interpolate-pair", timeout_seconds=PAIR_TIMEOUT)
def interpolate_pair(image0: str, image1: str, output: str = "out.mp4",
                     config: AnyConfig = InterpolationConfig(), model: ModelSpec = ModelSpec(),
                     fps: float = 10.0, cache: Optional[str] = None, dask: Optional[str] = None,
                     refresh: Refresh = "none", pair_id: Optional[str] = None, backend: Backend = "dreammover",
                     spread: int = 0, preset: Optional[str] = None, inputs: Optional[dict] = None,
                     keyframes: Optional[list[str]] = None, motions: Optional[list[float]] = None,
                     restyle: Optional[RestyleSettings] = None) -> dict:
    """Two photos (local paths or s3:// URIs) -> one clip at `output` plus `<output stem>.json`.

    Parameters (also those of the `interpolate-pair/*` deployments, e.g. for the studio):
    image0, image1: photo URIs; output: clip URI ending in .mp4/.webm/.gif; config: any
    InterpolationConfig fields; model: {model, vae, device, dtype}; fps; cache: artifact cache
    (folder or s3:// prefix; default $DREAMMOVER_HOME/pipeline-cache); dask: the GPU pool
    (None: this process; 'local[:N]', 'processes[:N]', 'cuda' or a scheduler address, see
    flows/runners.py); refresh: none | frames | all; pair_id: name in the summary; backend:
    dreammover | svd (then config holds SVDKeyframeConfig fields and model names an SVD model);
    spread: with frames_per_batch "auto", over how many GPUs to split the δ frames (0: every
    worker of the pool, 1 with no pool; the archive passes 1 when it has a pair for each GPU);
    preset: a clip preset name (reel, story, square-loop, ...): the clip is built as the studio builds
    it, at the preset's fps; inputs: the photos' versions as the archive's listing gave them (PairSpec.inputs()),
    so they are not read again (None: read here); keyframes: a chained burst's photos (more than two, image0/image1
    their first/last): one clip of K-1 segments, each with its own LoRA, its frames split by `motions` (one per
    segment; None: measured), see flows/chain.py; restyle: edit the rendered frames with text (DreamMotion,
    docs/restyle.md) before publishing. Returns the summary dict that is also written next to the clip.
    """
    recipe = clip_preset(preset, output)
    if dask and not _on_pool():
        # Called on its own (a deployment run, run-pair): the pool's client needs its own task runner.
        with gpu_pool(dask) as address:
            return render_pair.with_options(task_runner=pool_runner(address))(
                image0, image1, output, config, model, fps, cache, address, refresh, pair_id, backend, spread, recipe,
                inputs, keyframes, motions, restyle)
    return _render(image0, image1, output, config, model, fps, cache, dask, refresh, pair_id, backend, spread,
                   recipe, inputs, keyframes, motions, restyle)


@flow(name="render-pair", timeout_seconds=PAIR_TIMEOUT)
def render_pair(image0: str, image1: str, output: str, config: AnyConfig, model: ModelSpec, fps: float,
                cache: Optional[str], dask: Optional[str], refresh: Refresh, pair_id: Optional[str],
                backend: Backend = "dreammover", spread: int = 0, recipe: Optional[dict] = None,
                inputs: Optional[dict] = None, keyframes: Optional[list[str]] = None,
                motions: Optional[list[float]] = None, restyle: Optional[RestyleSettings] = None) -> dict:
    """interpolate_pair's body with a Dask client of the GPU pool as its task runner."""
    return _render(image0, image1, output, config, model, fps, cache, dask, refresh, pair_id, backend, spread,
                   recipe, inputs, keyframes, motions, restyle)


def _pool_workers() -> int:
    """Workers of the GPU pool this flow's task runner is a client of (1 without a pool)."""
    if not _on_pool():
        return 1
    return max(1, len(FlowRunContext.get().task_runner.client.scheduler_info().get("workers", {})))


def render_prepared(prepared, model: ModelSpec, config: InterpolationConfig, cache: str, refresh: Refresh,
                    spread: int) -> tuple[FittedPairArtifacts, list[ChunkArtifact], FramesArtifact]:
    """Steps 1-12 of a prepared pair on the pool: (fitted pair, δ chunks, decoded frames), content-keyed."""
    if spread == 1:  # a GPU to itself: the whole pair in one pool task, not one per step
        done = on_pool(render_frames, prepared=prepared, model=model, config=config, cache=cache,
                       parts=plan_chunks(config, 1), refresh=refresh)
        return done.pair, done.chunks, done.frames
    pair = on_pool(fit_pair, prepared=prepared, model=model, config=config, cache=cache,
                   recompute=refresh == "all")
    rendered = map_chunks(pair, model, config, cache, refresh=refresh != "none", spread=spread)
    frames = on_pool(decode_frames, chunks=rendered, prepared=prepared, model=model, config=config, cache=cache,
                     recompute=refresh != "none")
    return pair, rendered, frames


def _render(image0, image1, output, config, model, fps, cache, dask, refresh, pair_id, backend="dreammover",
            spread=0, recipe=None, inputs=None, keyframes=None, motions=None, restyle=None) -> dict:
    config = backend_config(backend, config)
    if keyframes and len(keyframes) > 2:  # a chained burst: one clip through all its keyframes (flows/chain.py)
        from .chain import render_chain_clip

        return render_chain_clip(keyframes, output, config, model, fps, cache, dask, refresh, pair_id, backend,
                                 spread or _pool_workers(), recipe, inputs, motions, restyle)
    if backend == "svd":
        return _render_svd(image0, image1, output, config, model, fps, cache, dask, refresh, pair_id, recipe, inputs,
                           restyle)
    start = time.perf_counter()
    cache, fmt = cache or default_cache(), clip_format(output)
    # Read once: the summary records the very versions its fingerprint was computed from.
    inputs = photo_inputs(image0, image1, known=inputs)  # the archive's listing gave them: no HEAD
    clip_id = fingerprint(image0, image1, model, config, fps, fmt, inputs=inputs, preset=recipe, restyle=restyle)
    prepared = prepare_images(image0, image1, config, cache)
    pair, rendered, frames = render_prepared(prepared, model, config, cache, refresh, spread or _pool_workers())
    loaded = pair.model
    # Reused artifacts carry no placement: count only this run's work.
    ran = [loaded.run, *[a.run for a in (pair.lora, pair.inversion, frames, *rendered) if a.run.computed]]
    edit = restyle_frames(frames, restyle, model, cache, refresh)
    summary = {
        "pair": pair_id or PurePosixPath(output).stem, "status": "done", "backend": "dreammover",
        "fingerprint": clip_id, "inputs": inputs,
        "format": fmt, "preset": (recipe or {}).get("name"), "size": [prepared.width, prepared.height],
        "model": loaded.identity,
        "model_spec": model.model_dump(), "config": config.model_dump(),
        "stages": {
            "lora": _stage(pair.lora.run),
            "inversion": _stage(pair.inversion.run),
            "denoise": {"chunks": len(rendered), "computed": sum(r.run.computed for r in rendered),
                        "unet_evals": sum(r.run.unet_evals for r in rendered),
                        "workers": sorted({r.run.worker for r in rendered if r.run.computed})},
            "decode": {"status": frames.run.status},
        },
        # Which pool worker ran what, and how many models each had loaded by then (the smoke's L and W).
        "pool": {"dask": dask, "model_loads": _max_by_worker(ran), "workers": sorted({r.worker for r in ran})},
        "cache": {"root": cache, "lora": pair.lora.uri, "inversion": pair.inversion.uri, "frames": frames.uri},
        "flow_run_id": str(get_run_context().flow_run.id),
        "seconds": round(time.perf_counter() - start, 3),
    }
    frames = _with_restyle(summary, edit, frames, ran)
    # The clip, written once, then the summary beside it (last: a summary means the clip is complete).
    clip = publish_clip(frames, fps, fmt, output, recipe, summary)
    summary, written = clip.summary, clip.uri
    _link(summary)
    get_run_logger().info("%s: %d frames -> %s (LoRA %s, inversion %s, %d/%d chunks rendered)", summary["pair"],
                          clip.frames, written, pair.lora.run.status, pair.inversion.run.status,
                          summary["stages"]["denoise"]["computed"], len(rendered))
    return summary


def _render_svd(image0, image1, output, config: SVDKeyframeConfig, model, fps, cache, dask, refresh,
                pair_id, recipe=None, inputs=None, restyle=None) -> dict:
    """backend=svd: load (resident) -> prepare keyframes -> render the frames (cached) -> encode -> publish."""
    start = time.perf_counter()
    cache, fmt = cache or default_cache(), clip_format(output)
    inputs = photo_inputs(image0, image1, known=inputs)
    clip_id = fingerprint(image0, image1, model, config, fps, fmt, backend="svd", inputs=inputs, preset=recipe,
                          restyle=restyle)
    with on_gpu():
        loaded = load_svd_model.submit(model).result()
    config = config if config.size is not None else config.model_copy(update={"size": loaded.native_size})
    prepared = prepare_svd_images(image0, image1, config, cache)
    frames = on_pool(render_svd_pair, prepared=prepared, model=model, identity=loaded.identity, config=config,
                     cache=cache, recompute=refresh != "none")
    ran = [loaded.run, *([frames.run] if frames.run.computed else [])]
    edit = restyle_frames(frames, restyle, model, cache, refresh)
    summary = {
        "pair": pair_id or PurePosixPath(output).stem, "status": "done", "backend": "svd",
        "fingerprint": clip_id, "inputs": inputs,
        "format": fmt, "preset": (recipe or {}).get("name"), "size": [prepared.width, prepared.height],
        "model": loaded.identity,
        "model_spec": model.model_dump(), "config": config.model_dump(),
        "stages": {"svd": {**_stage(frames.run), "stage_seconds": frames.stage_seconds}},
        "pool": {"dask": dask, "model_loads": _max_by_worker(ran), "workers": sorted({r.worker for r in ran})},
        "cache": {"root": cache, "frames": frames.uri},
        "flow_run_id": str(get_run_context().flow_run.id),
        "seconds": round(time.perf_counter() - start, 3),
    }
    frames = _with_restyle(summary, edit, frames, ran)
    # The clip, written once, then the summary beside it (last: a summary means the clip is complete).
    clip = publish_clip(frames, fps, fmt, output, recipe, summary)
    summary, written = clip.summary, clip.uri
    _link(summary)
    get_run_logger().info("%s: %d frames -> %s (svd frames %s)", summary["pair"], clip.frames, written,
                          frames.run.status)
    return summary


def restyle_frames(frames: FramesArtifact, restyle: Optional[RestyleSettings], model: ModelSpec, cache: str,
                   refresh: Refresh = "none") -> Optional[RestyledFrames]:
    """The rendered frames edited with text on the pool (restyle-clip, content-keyed), None without `restyle`.
    The T2V model runs where the pair's model ran (its device and dtype)."""
    if restyle is None:
        return None
    t2v = ModelSpec(model=restyle.model, device=model.device, dtype=model.dtype)
    return on_pool(restyle_clip, frames=frames, settings=restyle, model=t2v, cache=cache, recompute=refresh != "none")


def _with_restyle(summary: dict, edit: Optional[RestyledFrames], frames: FramesArtifact, ran: list) -> FramesArtifact:
    """The frames to publish (the edited ones when restyled), the restyle stage recorded in the summary."""
    if edit is None:
        return frames
    ran += [edit.model.run, *([edit.frames.run] if edit.frames.run.computed else [])]
    summary["stages"]["restyle"] = {**_stage(edit.frames.run), "stage_seconds": edit.frames.stage_seconds}
    summary["restyle"] = {**edit.settings, "identity": edit.model.identity}
    summary["cache"]["restyled"] = edit.frames.uri
    summary["pool"] = {**summary["pool"], "model_loads": _max_by_worker(ran), "workers": sorted({r.worker for r in ran})}
    return edit.frames


def _max_by_worker(runs: list[TaskRun]) -> dict:
    loads: dict[str, int] = {}
    for r in runs:
        loads[r.worker] = max(loads.get(r.worker, 0), r.model_loads)
    return loads


def _link(summary: dict) -> None:
    """A link artifact per pair, so the UI's flow run page points at the clip."""
    # Per output: a bare `clip-<pair>` was one key for the `dog` pair of every archive.
    key = artifact_key("clip", summary["pair"], summary["output"])
    create_link_artifact(link=summary["output"], link_text=f"{summary['pair']}.{summary['format']}", key=key,
                         description=f"{summary['frames']} frames at {summary['fps']:g} fps")


def _stage(run: TaskRun) -> dict:
    """UNet evaluations are counted only where the work happened in this run (a reused artifact's run is empty)."""
    return {"status": run.status, "unet_evals": run.unet_evals, "seconds": run.seconds}
