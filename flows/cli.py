"""`dreammover run-pair` / `dreammover run-archive`: the Prefect flows, embedded (no server to start).

Registered on the core typer app through the `dreammover.cli` entry point. Prefect is imported
inside the commands only, so `dreammover interpolate` does not pay for it. Without
PREFECT_API_URL, Prefect runs a temporary local API on SQLite for the duration of the command;
with it, the runs show up on that server.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

# Exit codes: 0 all pairs done or skipped; 2 bad input/usage; 3 partial (some pairs failed);
# 4 nothing succeeded. Kept in sync with flows.archive.EXIT_CODES (not imported: that pulls Prefect).
EXIT_BAD_INPUT, EXIT_PARTIAL, EXIT_FAILED = 2, 3, 4

MODEL = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                     help="'tiny', a hub id, a diffusers folder or a .safetensors file")
VAE = typer.Option(None, "--vae", help="separate VAE (hub id, folder or file)")
FRAMES = typer.Option(None, "--frames", min=1, help="in-between frames N (the clip has N+2) [default: 32]")
SIZE = typer.Option(None, "--size", min=64, help="long side in pixels (rounded to 64) [default: 512]")
PROMPT = typer.Option(None, "--prompt")
SEED = typer.Option(None, "--seed")
FPB = typer.Option(None, "--frames-per-batch", min=1, help="δ values per chunk (the unit of fan-out)")
FPS = typer.Option(10.0, "--fps", min=0.1)
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)")
DTYPE = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (default fp16 on CUDA)")
CONFIG = typer.Option(None, "--config", help="JSON/YAML file of InterpolationConfig fields")
CACHE = typer.Option(None, "--cache", help="artifact cache: folder or s3://bucket/prefix "
                                           "[default: $DREAMMOVER_HOME/pipeline-cache]")
DASK = typer.Option(None, "--dask", help="run δ chunks on Dask: 'local[:N]', 'processes[:N]' or a scheduler address")
REFRESH = typer.Option("none", "--refresh", help="recompute despite caches: none | frames | all")
PRESET = typer.Option(None, "--preset", help="clip preset (reel, story, square-loop, feed, landscape, gif-loop: "
                                             "dreammover/presets.py), built as the studio builds it; its fps wins")
RESTYLE_TARGET = typer.Option(None, "--restyle-target", help="restyle each clip to this target prompt before "
                                                              "publishing (DreamMotion, docs/restyle.md)")
RESTYLE_SOURCE = typer.Option(None, "--restyle-source", help="source prompt of --restyle-target [default: 'a video']")
RESTYLE_STEPS = typer.Option(None, "--restyle-steps", min=1, help="iterations of --restyle-target [default: 200]")
RESTYLE_MODEL = typer.Option("cerspense/zeroscope_v2_576w", "--restyle-model",
                             help="text-to-video model of --restyle-target: 'tiny-t2v', a hub id or a folder")
BACKEND = typer.Option("dreammover", "--backend", help="dreammover | svd (Generative Inbetweening; --config then "
                                                       "holds SVDKeyframeConfig fields, docs/backends.md)")


def _setup_env() -> None:
    from dreammover.cli import require_extra

    require_extra("pipeline", "prefect", "prefect_dask", "distributed", "boto3")
    # Embedded runs talk to no one by default: no usage analytics from the temporary server.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _config(config_file, **overrides):
    from dreammover.cli import fail
    from dreammover.config_io import load_config_file

    try:
        return load_config_file(config_file, **overrides)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {err}", EXIT_BAD_INPUT)


def _backend_config(backend: str, model: str, config_file, frames, size, prompt, seed, frames_per_batch):
    """(config, model) for `backend`, refusing an unknown backend or DreamMover-only options before any work."""
    from dreammover.backends import BACKENDS, default_model, load_backend_config
    from dreammover.backends.cli import _SD_DEFAULT
    from dreammover.cli import fail

    if backend not in BACKENDS:
        fail(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}", EXIT_BAD_INPUT)
    if backend == "dreammover":
        return _config(config_file, num_frames=frames, size=size, prompt=prompt, seed=seed,
                       frames_per_batch=frames_per_batch), model
    for name, value in (("--prompt", prompt), ("--frames-per-batch", frames_per_batch)):
        if value is not None:
            fail(f"{name} is a DreamMover option: not used by --backend {backend}", EXIT_BAD_INPUT)
    try:
        config = load_backend_config(backend, config_file, num_frames=frames, size=size, seed=seed)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {err}", EXIT_BAD_INPUT)
    return config, default_model(backend) if model == _SD_DEFAULT else model


def _restyle(target: Optional[str], source: Optional[str], steps: Optional[int], model: str):
    """RestyleSettings for --restyle-*, None without --restyle-target; an empty prompt exits 2 before any work."""
    from dreammover.cli import fail

    if target is None:
        if source is not None or steps is not None:
            fail("--restyle-source / --restyle-steps need --restyle-target", EXIT_BAD_INPUT)
        return None
    if not target.strip():
        fail("--restyle-target: the target prompt is empty: say what the clip should look like", EXIT_BAD_INPUT)
    from pydantic import ValidationError

    from dreammover.restyle import RestyleConfig
    from dreammover.restyle.cli import DEFAULT_SOURCE_PROMPT
    from dreammover_tasks.restyle import RestyleSettings

    try:
        return RestyleSettings(target=target, source=DEFAULT_SOURCE_PROMPT if source is None else source,
                               model=model, config=RestyleConfig(**({"steps": steps} if steps else {})))
    except ValidationError as err:
        fail(f"bad restyle setting: {err.errors()[0]['msg']}", EXIT_BAD_INPUT)


def _check_refresh(refresh: str) -> None:
    from dreammover.cli import fail

    if refresh not in ("none", "frames", "all"):
        fail(f"--refresh must be none, frames or all (got {refresh!r})", EXIT_BAD_INPUT)


def _check_resident() -> None:
    """DREAMMOVER_RESIDENT_MODELS (read by every model task of this process and of local pools) is valid."""
    from dreammover.cli import fail
    from dreammover_tasks.models import resident_capacity

    try:
        resident_capacity()
    except ValueError as err:
        fail(str(err), EXIT_BAD_INPUT)


def run_pair(
    image0: str = typer.Argument(..., help="first photo (path or s3:// URI)"),
    image1: str = typer.Argument(..., help="second photo (path or s3:// URI)"),
    output: str = typer.Option("out.mp4", "-o", "--output", help="clip (.mp4/.webm/.gif; path or s3:// URI); "
                                                                 "a .json summary is written next to it"),
    model: str = MODEL, vae: Optional[str] = VAE, frames: Optional[int] = FRAMES, size: Optional[int] = SIZE,
    prompt: Optional[str] = PROMPT, seed: Optional[int] = SEED, frames_per_batch: Optional[int] = FPB,
    fps: float = FPS, device: Optional[str] = DEVICE, dtype: Optional[str] = DTYPE,
    config_file: Optional[Path] = CONFIG, cache: Optional[str] = CACHE, dask: Optional[str] = DASK,
    refresh: str = REFRESH, backend: str = BACKEND, preset: Optional[str] = PRESET,
    restyle_target: Optional[str] = RESTYLE_TARGET, restyle_source: Optional[str] = RESTYLE_SOURCE,
    restyle_steps: Optional[int] = RESTYLE_STEPS, restyle_model: str = RESTYLE_MODEL,
) -> None:
    """Interpolate one pair with the Prefect pair flow (cached LoRA / inversion; chunked δ fan-out)."""
    from dreammover.cli import fail

    _setup_env()
    _check_refresh(refresh)
    restyle = _restyle(restyle_target, restyle_source, restyle_steps, restyle_model)
    config, model = _backend_config(backend, model, config_file, frames, size, prompt, seed, frames_per_batch)
    for uri in (image0, image1):  # a clear message now beats a failed flow run later
        if "://" not in uri and not Path(uri).is_file():
            fail(f"{uri}: file not found", EXIT_BAD_INPUT)
    from dreammover_flows.pair import clip_format, clip_preset, interpolate_pair
    from dreammover_tasks.models import ModelSpec

    _check_resident()
    try:
        clip_format(output)
        clip_preset(preset, output)
    except ValueError as err:
        fail(str(err), EXIT_BAD_INPUT)
    from dreammover_flows.local_api import temporary_api

    with temporary_api():
        state = interpolate_pair(image0, image1, output, config=config, fps=fps, cache=cache, dask=dask,
                                 refresh=refresh, model=ModelSpec(model=model, vae=vae, device=device, dtype=dtype),
                                 backend=backend, preset=preset, restyle=restyle, return_state=True)
    if not state.is_completed():
        exc = state.result(raise_on_failure=False)
        fail(f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(state.message), EXIT_FAILED)
    summary = state.result()
    stages = ", ".join(f"{k} {v['status']}" for k, v in summary["stages"].items() if "status" in v)
    typer.echo(f"wrote {summary['output']} ({summary['frames']} frames at {summary['fps']:g} fps; {stages}; "
               f"{summary['seconds']:.1f}s)")


def run_archive(
    source: str = typer.Argument(..., help="folder or s3:// prefix laid out as <pair-id>/0.*, <pair-id>/1.* "
                                 "(with --discover: any folder of photos)"),
    output: str = typer.Option(..., "-o", "--output", help="folder or s3:// prefix for <pair-id>.<fmt> + .json"),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="JSON/YAML/CSV list of {id, image0, image1}"),
    force: bool = typer.Option(False, "--force", help="re-render pairs even when their clip is up to date"),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="an empty source is not an error (exit 0)"),
    fmt: str = typer.Option("mp4", "--format", help="mp4 | webm | gif"),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="run each pair as a flow run of this "
                                             "deployment (e.g. interpolate-pair/gpu) instead of in this process"),
    model: str = MODEL, vae: Optional[str] = VAE, frames: Optional[int] = FRAMES, size: Optional[int] = SIZE,
    prompt: Optional[str] = PROMPT, seed: Optional[int] = SEED, frames_per_batch: Optional[int] = FPB,
    fps: float = FPS, device: Optional[str] = DEVICE, dtype: Optional[str] = DTYPE,
    config_file: Optional[Path] = CONFIG, cache: Optional[str] = CACHE, dask: Optional[str] = DASK,
    refresh: str = REFRESH, backend: str = BACKEND, preset: Optional[str] = PRESET,
    discover: bool = typer.Option(False, "--discover", help="find the pairs in a folder of photos (bursts), only "
                                  "those new since the last run: state in <output>/.dreammover/"),
    gap: Optional[float] = typer.Option(None, "--gap", min=0.0, help="with --discover: seconds between the photos "
                                        "of one burst [default: DiscoverConfig.burst_gap_s]"),
    chain: bool = typer.Option(False, "--chain", help="with --discover: a burst of K photos is ONE clip through "
                               "all of them (K-1 segments)"),
    restyle_target: Optional[str] = RESTYLE_TARGET, restyle_source: Optional[str] = RESTYLE_SOURCE,
    restyle_steps: Optional[int] = RESTYLE_STEPS, restyle_model: str = RESTYLE_MODEL,
) -> None:
    """Interpolate every pair of an archive; exit 0 ok, 3 partial (some pairs failed), 4 all failed."""
    from dreammover.cli import fail

    _setup_env()
    _check_refresh(refresh)
    restyle = _restyle(restyle_target, restyle_source, restyle_steps, restyle_model)
    config, model = _backend_config(backend, model, config_file, frames, size, prompt, seed, frames_per_batch)
    if "://" not in source and not Path(source).is_dir():
        fail(f"{source}: no such folder", EXIT_BAD_INPUT)
    discover_config = _discover_config(discover, manifest, gap, chain)
    from dreammover_flows.archive import EXIT_CODES, interpolate_archive
    from dreammover_tasks.encode import FORMATS
    from dreammover_tasks.models import ModelSpec

    _check_resident()
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})", EXIT_BAD_INPUT)
    from dreammover_flows.pair import clip_preset

    try:
        clip_preset(preset, f"clip.{fmt}")
    except ValueError as err:
        fail(str(err), EXIT_BAD_INPUT)

    from dreammover_flows.archive import ArchiveIncomplete, EmptySource, OutputNotWritable
    from dreammover_flows.local_api import temporary_api
    from dreammover_tasks.storage import StorageError

    # The flow checks the output (one probe write) and lists the source once, before any pair; here they
    # were done a second time. Its OutputNotWritable / EmptySource / a source it cannot list exit 2 below.
    with temporary_api():
        state = interpolate_archive(source, output, config=config, fps=fps, fmt=fmt, manifest=manifest,
                                    force=force, cache=cache, dask=dask, refresh=refresh, allow_empty=allow_empty,
                                    pair_deployment=deployment, backend=backend, preset=preset, restyle=restyle,
                                    return_state=True, discover=discover, discover_config=discover_config,
                                    model=ModelSpec(model=model, vae=vae, device=device, dtype=dtype))
    # Partial and failed archives end in a Failed state whose exception carries the report.
    report = state.result(raise_on_failure=False)
    if isinstance(report, ArchiveIncomplete):
        report = report.report
    if isinstance(report, (EmptySource, OutputNotWritable, StorageError, ValueError)):
        fail(str(report), EXIT_BAD_INPUT)
    if not isinstance(report, dict):
        fail(f"archive run failed: {type(report).__name__}: {report}" if isinstance(report, BaseException)
             else str(state.message), EXIT_FAILED)
    for entry in report["pairs"]:
        detail = entry.get("reason") if entry["status"] != "done" else entry.get("output")
        typer.echo(f"  {entry['status']:<8} {entry['pair']}: {detail}")
    typer.echo(json.dumps({k: report[k] for k in ("status", "done", "skipped", "failed", "report")}))
    raise typer.Exit(EXIT_CODES[report["status"]])


def _discover_config(discover: bool, manifest, gap, chain) -> Optional[dict]:
    """The DiscoverConfig fields of `--discover [--gap S] [--chain]`; their misuse exits 2 before any work."""
    from dreammover.cli import fail

    if not discover:
        if gap is not None or chain:
            fail("--gap and --chain go with --discover", EXIT_BAD_INPUT)
        return None
    if manifest:
        fail("--discover finds the pairs itself: give either --manifest or --discover", EXIT_BAD_INPUT)
    return {**({"burst_gap_s": gap} if gap is not None else {}), **({"chain": True} if chain else {})}


def register(app: typer.Typer) -> None:
    """Entry point of the `dreammover.cli` group: add the pipeline commands to the core CLI."""
    app.command("run-pair")(run_pair)
    app.command("run-archive")(run_archive)
