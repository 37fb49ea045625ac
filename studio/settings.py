"""A job request's form fields -> a checked config, clip preset and output formats, or a 4xx in plain words.

Also the estimate before queueing: UNet work and memory from the library's preflight (refused with the
estimate when over the host's allowance), and the warnings the CLI would give (heavy crops, big upscales).
"""
from __future__ import annotations

import json
import statistics
import warnings
from dataclasses import dataclass

from fastapi import HTTPException
from pydantic import ValidationError

from dreammover.config import InterpolationConfig
from dreammover.presets import PRESETS, ClipPreset, output_size

from .limits import StudioLimits, check_bounds, check_clip, check_settings, plain
from .svd_jobs import BACKENDS, SVDKeyframeConfig

SHARED = ("num_frames", "size", "seed")  # settings both backends have


@dataclass(frozen=True)
class Form:
    """The settings part of POST /jobs and /jobs/{id}/again (None: not given)."""

    preset: str = "raw"
    settings: str = "{}"
    frames: int | None = None
    size: int | None = None
    prompt: str | None = None
    seed: int | None = None
    backend: str | None = None
    formats: str | None = None


@dataclass(frozen=True)
class Defaults:
    """The studio's starting settings per backend, and whether svd jobs can run here."""

    base: dict
    svd_base: dict
    svd_ready: bool

    @classmethod
    def of(cls, config: InterpolationConfig | None, svd_ready: bool) -> "Defaults":
        base = {"backend": "dreammover", **(config or InterpolationConfig()).model_dump()}
        # svd jobs start from SVD's defaults with the studio's N, size and seed (what the page shows)
        svd = {"backend": "svd", **SVDKeyframeConfig(**{k: base[k] for k in SHARED}).model_dump()}
        return cls(base, svd, svd_ready)


def parse(form: Form, start: dict, defaults: Defaults, limits: StudioLimits):
    """(config, clip, formats) for a job starting from `start` (the defaults, or the source job's settings)."""
    backend = form.backend or start.get("backend", "dreammover")
    if backend not in BACKENDS:
        raise HTTPException(400, f"backend: unknown {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "svd" and not defaults.svd_ready:
        raise HTTPException(400, "backend: svd is not available here: start the studio with --svd-model "
                                 "(e.g. tiny-svd or stabilityai/stable-video-diffusion-img2vid-xt)")
    if backend != start.get("backend", "dreammover"):  # switching method: keep only what both share
        fresh = defaults.svd_base if backend == "svd" else defaults.base
        start = {**fresh, **{k: start[k] for k in SHARED if k in start}}
    if backend == "svd" and form.prompt:
        raise HTTPException(400, "prompt: the svd backend takes no prompt: leave it empty")
    if form.preset not in PRESETS:
        raise HTTPException(400, f"preset: unknown {form.preset!r}: use one of {', '.join(PRESETS)}")
    try:
        extra = json.loads(form.settings or "{}")
    except json.JSONDecodeError:
        raise HTTPException(400, "settings: must be a JSON object, e.g. {\"lora_steps\": 40}") from None
    if not isinstance(extra, dict):
        raise HTTPException(400, "settings: must be a JSON object, e.g. {\"lora_steps\": 40}")
    clip_over = extra.pop("clip", {}) or {}
    if not isinstance(clip_over, dict):
        raise HTTPException(400, "settings.clip: must be a JSON object of clip fields")
    for key in ("backend", "backward_weights", "backward_weights_base"):  # no server paths from a form
        if key in extra:
            raise HTTPException(400, f"settings.{key}: cannot be set here" +
                                (": use the backend field" if key == "backend" else ""))
    prompt = form.prompt if backend == "dreammover" else None  # svd: only an empty prompt gets here
    page = {k: v for k, v in dict(num_frames=form.frames, size=form.size, prompt=prompt, seed=form.seed).items()
            if v is not None}
    cls = SVDKeyframeConfig if backend == "svd" else InterpolationConfig
    fields = {k: v for k, v in {**start, **extra, **page}.items() if k != "backend"}
    if isinstance(fields.get("prompt"), str) and len(fields["prompt"]) > limits.prompt_chars:
        raise HTTPException(400, f"prompt: {len(fields['prompt'])} characters is more than the limit of "
                                 f"{limits.prompt_chars}")
    check_bounds(fields, limits.field_bounds())  # ours first: they name the limit, and catch 10**30 early
    try:
        config = cls(**fields)
    except ValidationError as err:
        raise HTTPException(400, plain(err)) from None
    except ValueError as err:  # a model_post_init rule (e.g. inversion_steps > num_inference_steps)
        raise HTTPException(400, f"settings: {err}") from None
    check_settings(config, limits)
    check_bounds(clip_over, limits.clip_bounds(), "clip.")
    try:
        clip = PRESETS[form.preset].model_validate({**PRESETS[form.preset].model_dump(), **clip_over})
    except ValidationError as err:
        raise HTTPException(400, plain(err, "clip.")) from None
    check_clip(clip, config.num_frames + 2, limits)
    return config, clip, formats_of(form.formats, clip, limits)


def formats_of(asked: str | None, clip: ClipPreset, limits: StudioLimits) -> list[str]:
    """The formats encoded as part of the job: the preset's, plus any asked (comma-separated)."""
    wanted = [clip.format] + [f.strip().lower() for f in (asked or "").split(",") if f.strip()]
    out = []
    for f in wanted:
        if f not in limits.formats:
            raise HTTPException(400, f"formats: {f!r} is not made here: use {', '.join(limits.formats)} "
                                     "(PNG frames: the frames zip)")
        if f not in out:
            out.append(f)
    return out


def speed(jobs: list[dict]) -> float | None:
    """Seconds per UNet evaluation measured on recent finished jobs (median), None before the first."""
    rates = [sum(j["seconds"].values()) / sum(j["unet_evals"].values()) for j in jobs
             if j["state"] == "done" and j.get("seconds") and j.get("unet_evals") and sum(j["unet_evals"].values())]
    return statistics.median(rates) if rates else None


def _time(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def estimate(config, image_hw: tuple[int, int], limits: StudioLimits, components=None,
             rate: float | None = None) -> dict:
    """UNet work, time and memory of a job before it is queued; a 400 with the estimate when it is too much."""
    from dreammover.preflight import plan_run, unet_passes

    from .svd_jobs import svd_stage_weights

    if isinstance(config, SVDKeyframeConfig):
        evals = int(svd_stage_weights(config)["denoise"])
        if evals > limits.svd_clip_evals:
            raise HTTPException(400, f"settings: this svd job needs about {evals} clip evaluations, more than the "
                                     f"limit of {limits.svd_clip_evals}: use fewer steps or recurrences")
        return {"clip_evals": evals}
    passes = sum(unet_passes(config).values())
    seconds = passes * rate if rate else None
    if passes > limits.unet_passes:
        when = f" (~{_time(seconds)} at this studio's speed)" if seconds else ""
        raise HTTPException(400, f"settings: this job needs about {passes} UNet passes{when}, more than the "
                                 f"limit of {limits.unet_passes}: use fewer frames, steps or LoRA steps")
    if seconds and seconds > limits.job_seconds:
        raise HTTPException(400, f"settings: this job would take about {_time(seconds)} ({passes} UNet passes), "
                                 f"more than the limit of {_time(limits.job_seconds)}: use fewer frames or steps")
    out = {"unet_passes": passes, "seconds": seconds}
    if components is not None:
        plan = plan_run(config, image_hw, components)
        if not plan.notes:  # a queued job runs later: judge it by the device's whole memory, not what the
            plan.available_bytes = _total_memory(plan.available_bytes, components)  # running job leaves free
        if not plan.fits:
            raise HTTPException(400, f"settings: this job does not fit in memory here: {plan.summary()}; "
                                     "use a smaller size or fewer frames per batch")
        out["memory_bytes"] = plan.peak_bytes
    return out


def describe_output(fmt: str, config, clip: ClipPreset, photo_hw: tuple[int, int], limits: StudioLimits) -> dict:
    """Size, fps, frame count (and for a GIF a byte estimate) of one format, before anything is rendered."""
    from dreammover.images import working_size

    from .encoding import Output

    hw = working_size(photo_hw[0], photo_hw[1], config.size or 1024)
    return Output(fmt, config.num_frames + 2, clip, hw, limits.gif_side, limits.gif_fps).describe()


def _total_memory(free: int | None, components) -> int | None:
    """The device's total memory (GPU), or the host's MemTotal; `free` when neither can be read."""
    import torch

    device = getattr(components, "device", torch.device("cpu"))
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[1])
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return free


def warnings_for(images, config, clip: ClipPreset) -> list[str]:
    """What the CLI would warn about: most of a photo cropped away, a photo or the clip upscaled a lot."""
    from dreammover.images import UPSCALE_WARN, ImageInputWarning, prepare_pair, working_size

    said = []
    arrays = [__import__("numpy").asarray(im) for im in images]
    size = config.size or 1024
    if isinstance(config, InterpolationConfig):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImageInputWarning)
            prepare_pair(arrays[0], arrays[1], size, config.resize_policy)
        for w in caught:
            if issubclass(w.category, ImageInputWarning):
                said.append(str(w.message).replace("image0", "photo 1").replace("image1", "photo 2"))
    h, w = working_size(arrays[0].shape[0], arrays[0].shape[1], size)
    oh, ow = output_size(h, w, clip)
    up = max(oh / h, ow / w)
    if up > UPSCALE_WARN:
        said.append(f"the clip is upscaled {up:.3g}x from the {w}x{h} render to {ow}x{oh}: it will look soft "
                    "(use a larger size)")
    return said
