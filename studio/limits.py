"""One limits model for everything a caller can ask of the studio, and refusals that name the field and the limit.

Every number a job's settings (InterpolationConfig or SVDKeyframeConfig) or clip overrides (ClipPreset) can
carry has a bound here; `unbounded()` lists any that lacks one (a test keeps it empty, so a new config field
cannot slip through). Library validation errors are turned into plain words before they reach a user.
"""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

MiB = 1024 * 1024


class StudioLimits(BaseModel):
    """What one job may ask for (the server's, not the page's: the page only mirrors them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upload_bytes: int = Field(20 * MiB, ge=1, description="per photo")
    pixels: int = Field(40_000_000, ge=1, description="per photo, read from the header before decoding")
    frames: int = Field(64, ge=1, description="in-between frames N")
    size: int = Field(1024, ge=64, description="working long side in px")
    steps: int = Field(100, ge=2, description="DDIM / inversion / SVD sampling steps")
    lora_steps: int = Field(400, ge=0)
    lora_rank: int = Field(64, ge=1)
    seed: int = Field(2 ** 32 - 1, ge=0)
    prompt_chars: int = Field(1000, ge=0)
    clip_seconds: float = Field(60.0, gt=0, description="a clip's duration")
    clip_frames: int = Field(7200, ge=2, description="frames in a finished clip: duration x fps, holds, loops")
    clip_side: int = Field(2160, ge=16, description="a clip's width or height (upscale size)")
    retime: tuple[str, ...] = ("repeat", "blend")
    unet_passes: int = Field(40_000, ge=1, description="UNet image-evaluations of one DreamMover job")
    svd_clip_evals: int = Field(2_000, ge=1, description="SVD clip evaluations of one svd job")
    restyle_steps: int = Field(200, ge=1, description="iterations of one restyle job (the paper's 200)")
    job_seconds: float = Field(4 * 3600.0, gt=0, description="estimated time of one job, when a speed is known")
    formats: tuple[str, ...] = ("mp4", "webm", "gif")
    gif_side: int = Field(480, ge=16, description="long side of a GIF (a GIF is a preview, not a master)")
    gif_fps: float = Field(15.0, gt=0)

    def field_bounds(self) -> dict[str, tuple[float, float]]:
        """Inclusive (low, high) of every numeric settings field of both backends."""
        return {
            "num_frames": (1, self.frames), "frames_per_batch": (1, self.frames), "size": (64, self.size),
            "num_inference_steps": (2, self.steps), "inversion_steps": (1, self.steps),
            "feature_step": (0, self.steps), "lora_steps": (0, self.lora_steps), "lora_rank": (1, self.lora_rank),
            "lora_lr": (0, 0.1), "lora_invert_scale": (0, 2), "lora_denoise_scale": (0, 2),
            "guidance_scale": (1, 20), "feature_block": (0, 3), "flow_chunk_rows": (1, 65536),
            "splat_alpha": (-100, 100), "reference_blocks": (0, 32), "decode_batch": (1, 64),
            "seed": (0, self.seed), "fps": (1, 60), "motion_bucket_id": (0, 1023), "noise_aug_strength": (0, 1),
            "noise_injection_steps": (0, 10), "noise_injection_ratio": (0, 1), "decode_chunk": (1, 64),
        }

    def clip_bounds(self) -> dict[str, tuple[float, float]]:
        """The same for clip overrides (ClipPreset fields)."""
        return {"hold": (0, 300), "fps": (1, 120), "duration": (0.1, self.clip_seconds),
                "width": (16, self.clip_side), "height": (16, self.clip_side), "focus": (0, 1),
                "pad_color": (0, 255)}


def refuse(field: str, detail: str, status: int = 400) -> HTTPException:
    return HTTPException(status, f"{field}: {detail}")


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return []


def _show(v: float) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def check_bounds(values: dict, bounds: dict[str, tuple[float, float]], prefix: str = "") -> None:
    """Raise a 400 naming the first field outside its (low, high)."""
    for name, value in values.items():
        if name not in bounds:
            continue
        low, high = bounds[name]
        for v in _numbers(value):
            if v > high:
                raise refuse(prefix + name, f"{_show(v)} is more than the limit of {_show(high)}")
            if v < low:
                raise refuse(prefix + name, f"{_show(v)} is less than the minimum of {_show(low)}")


def unbounded(model_cls, bounds: dict[str, tuple[float, float]]) -> list[str]:
    """Numeric fields of a pydantic model without a bound (should be none)."""
    import typing

    out = []
    for name, info in model_cls.model_fields.items():
        kinds = {a for a in typing.get_args(info.annotation) or (info.annotation,)}
        for k in list(kinds):
            kinds |= set(typing.get_args(k))
        if kinds & {int, float} and name not in bounds:
            out.append(name)
    return out


def check_settings(config, limits: StudioLimits) -> None:
    """A built config (either backend) against the limits, plus the prompt's length."""
    fields = config.model_dump()
    check_bounds(fields, limits.field_bounds())
    prompt = fields.get("prompt") or ""
    if len(prompt) > limits.prompt_chars:
        raise refuse("prompt", f"{len(prompt)} characters is more than the limit of {limits.prompt_chars}")


def check_clip(clip, generated: int, limits: StudioLimits) -> None:
    """Clip overrides: each field's bound, the retime mode, and the finished clip's frame count."""
    check_bounds(clip.model_dump(), limits.clip_bounds(), "clip.")
    if len(clip.name) > 64:
        raise refuse("clip.name", "more than 64 characters")
    if clip.retime not in limits.retime:
        raise refuse("clip.retime", f"{clip.retime!r} is not allowed here: use {', '.join(limits.retime)}")
    count = clip.frame_count(generated)
    if count > limits.clip_frames:
        raise refuse("clip", f"duration x fps (with holds and loop) makes {count} frames, more than the limit of "
                             f"{limits.clip_frames}: shorten the clip or lower the fps")


def plain(err: ValidationError, prefix: str = "") -> str:
    """Pydantic's errors as one sentence a user can act on ('lora_rank must be at least 1')."""
    said = []
    for e in err.errors():
        loc = prefix + ".".join(str(p) for p in e["loc"]) if e["loc"] else (prefix.rstrip(".") or "settings")
        ctx, kind = e.get("ctx") or {}, e["type"]
        words = {
            "greater_than_equal": f"must be at least {ctx.get('ge')}",
            "greater_than": f"must be more than {ctx.get('gt')}",
            "less_than_equal": f"must be at most {ctx.get('le')}",
            "less_than": f"must be less than {ctx.get('lt')}",
            "int_parsing": "must be a whole number", "int_from_float": "must be a whole number",
            "int_type": "must be a whole number", "float_parsing": "must be a number", "float_type": "must be a number",
            "bool_parsing": "must be true or false", "bool_type": "must be true or false",
            "string_type": "must be text", "extra_forbidden": "is not a setting here",
            "literal_error": f"must be one of {ctx.get('expected')}", "missing": "is required",
            "tuple_type": "must be a list of numbers",
        }.get(kind)
        if words is None:  # a model validator's own sentence ('give both width and height, or neither')
            words = str(ctx.get("error") or e["msg"]).removeprefix("Value error, ")
            said.append(f"{loc}: {words}")
        else:
            said.append(f"{loc} {words}")
    return "; ".join(said)
