"""Clip presets: how the N+2 generated frames become a social clip (aspect, timing, holds, loop, fps, size, format).

Everything here works on decoded frames, so a preset or timing change re-encodes a finished render without any
UNet work. Timing curves therefore *remap* the uniformly generated frames (δ_i = i/(N+1), `config.deltas`
unchanged, caches untouched) instead of asking the model for eased δ values: output frame k of M shows clip
time s = curve(k/(M-1)), i.e. generated position s·(N+1), by repetition of the nearest frame or a cheap linear
blend of the two neighbours (`retime`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

ASPECTS = {"16:9": 16 / 9, "9:16": 9 / 16, "1:1": 1.0, "4:5": 4 / 5}
CURVES: dict[str, Callable[[float], float]] = {
    "linear": lambda s: s,
    "ease-in": lambda s: s * s,
    "ease-out": lambda s: 1 - (1 - s) ** 2,
    "ease-in-out": lambda s: 0.5 - 0.5 * math.cos(math.pi * s),
}
SUFFIX = {"mp4": ".mp4", "webm": ".webm", "gif": ".gif", "png": ""}


class ClipPreset(BaseModel):
    """One output recipe; every field has a default so a preset is a handful of overrides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "custom"
    aspect: Literal["source", "16:9", "9:16", "1:1", "4:5"] = "source"
    fit: Literal["crop", "pad"] = "crop"
    focus: tuple[float, float] = Field((0.5, 0.5), description="crop centre (x, y) as fractions of the frame")
    pad: Literal["blur", "solid"] = "blur"
    pad_color: tuple[int, int, int] = (0, 0, 0)
    curve: Literal["linear", "ease-in", "ease-out", "ease-in-out"] = "linear"
    hold: int = Field(0, ge=0, le=300, description="extra copies of each end frame")
    loop: Literal["once", "boomerang"] = "once"
    fps: float = Field(10.0, gt=0, le=120)
    duration: float | None = Field(None, gt=0, le=60, description="whole clip in seconds; None: one frame per "
                                                                  "generated frame")
    retime: Literal["repeat", "blend"] = "repeat"
    width: int | None = Field(None, ge=16, le=4096)
    height: int | None = Field(None, ge=16, le=4096)
    format: Literal["mp4", "webm", "gif", "png"] = "mp4"

    @model_validator(mode="after")
    def _check(self) -> "ClipPreset":
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither")
        if self.width and self.format in ("mp4", "webm") and (self.width % 2 or self.height % 2):
            raise ValueError("mp4/webm (yuv420p) need an even width and height")
        if not all(0.0 <= f <= 1.0 for f in self.focus):
            raise ValueError("focus is (x, y) in [0, 1]")
        return self

    def motion_frames(self, generated: int) -> int:
        """Frames of one A->B pass: the generated count, or what `duration` at `fps` leaves after holds/looping."""
        if self.duration is None:
            return generated
        total = max(1, round(self.duration * self.fps))
        if self.loop == "boomerang":  # forward + mirrored forward without its last frame
            total = (total + 1) // 2
        return max(2, total - 2 * self.hold)

    def frame_count(self, generated: int) -> int:
        """Frames in the finished clip for `generated` (= N+2) input frames."""
        forward = self.motion_frames(generated) + 2 * self.hold
        return 2 * forward - 1 if self.loop == "boomerang" else forward


_REEL = dict(width=1080, height=1920, aspect="9:16", fps=30.0)
# The named presets: one place for the content team's formats (the studio and `--preset` read this dict).
PRESETS: dict[str, ClipPreset] = {p.name: p for p in (
    ClipPreset(name="raw"),
    ClipPreset(name="reel", **_REEL, fit="crop", curve="ease-in-out", hold=6, duration=3.0, retime="blend"),
    ClipPreset(name="story", **_REEL, fit="pad", pad="blur", curve="ease-in-out", loop="boomerang", duration=4.0,
               retime="blend"),
    ClipPreset(name="square-loop", aspect="1:1", width=1080, height=1080, loop="boomerang", fps=15.0),
    ClipPreset(name="feed", aspect="4:5", width=1080, height=1350, curve="ease-in-out", hold=4, fps=30.0,
               duration=3.0, retime="blend"),
    ClipPreset(name="landscape", aspect="16:9", width=1920, height=1080, fit="pad", fps=30.0, duration=3.0,
               retime="blend"),
    ClipPreset(name="gif-loop", loop="boomerang", fps=10.0, format="gif"),
)}


def get_preset(name: str, **overrides) -> ClipPreset:
    """A named preset with field overrides; a clear ValueError for unknown names or bad values."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name].model_validate({**PRESETS[name].model_dump(), **overrides})


def retime(frames: Sequence[np.ndarray], count: int, curve: str = "linear", mode: str = "repeat") -> list[np.ndarray]:
    """`count` frames sampling the generated ones at curve(k/(count-1)); repeats reuse the same arrays."""
    n, f = len(frames), CURVES[curve]
    if count == n and curve == "linear":
        return list(frames)
    out = []
    for k in range(count):
        p = f(k / max(1, count - 1)) * (n - 1)
        i = min(int(math.floor(p)), n - 2) if n > 1 else 0
        w = p - i
        if mode == "repeat" or n == 1 or w < 1e-6 or w > 1 - 1e-6:
            out.append(frames[min(n - 1, int(round(p)))])
        else:  # cheap cross-blend of the two neighbours: no model work
            import cv2

            out.append(cv2.addWeighted(frames[i], 1 - w, frames[i + 1], w, 0.0))
    return out


def timeline(frames: Sequence[np.ndarray], preset: ClipPreset) -> list[np.ndarray]:
    """Timing curve, holds and loop mode; boomerang mirrors the forward pass, reusing its frames (no recomputation)."""
    motion = retime(frames, preset.motion_frames(len(frames)), preset.curve, preset.retime)
    forward = [motion[0]] * preset.hold + motion + [motion[-1]] * preset.hold
    return forward + forward[-2::-1] if preset.loop == "boomerang" else forward


def output_size(h: int, w: int, preset: ClipPreset) -> tuple[int, int]:
    """(height, width) of the clip: the preset's size, else the source's reshaped to the aspect (even sides)."""
    if preset.width:
        return preset.height, preset.width
    r = ASPECTS.get(preset.aspect, w / h)
    if (preset.fit == "crop") == (w / h > r):  # crop a wide source / pad a tall one: keep the height
        w = h * r
    else:
        h = w / r
    return max(2, int(round(h / 2)) * 2), max(2, int(round(w / 2)) * 2)


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    if img.shape[:2] == (h, w):
        return img
    # Lanczos for upscaling (the tiny decode is far below 1080p); area averaging for downscaling.
    up = h * w > img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LANCZOS4 if up else cv2.INTER_AREA)


def reframe(frame: np.ndarray, preset: ClipPreset) -> np.ndarray:
    """Crop (on the focus point) or pad (blurred or solid) to the preset's aspect, then resize to its size."""
    import cv2

    H, W = output_size(*frame.shape[:2], preset)
    h, w = frame.shape[:2]
    r = W / H
    if abs(w / h - r) < 1e-3:
        return _resize(frame, H, W)
    if preset.fit == "crop":
        cw, ch = (int(round(h * r)), h) if w / h > r else (w, int(round(w / r)))
        cx = int(round(preset.focus[0] * w - cw / 2))
        cy = int(round(preset.focus[1] * h - ch / 2))
        cx, cy = min(max(cx, 0), w - cw), min(max(cy, 0), h - ch)
        return _resize(np.ascontiguousarray(frame[cy:cy + ch, cx:cx + cw]), H, W)
    s = min(W / w, H / h)
    fw, fh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    if preset.pad == "solid":
        canvas = np.empty((H, W, 3), np.uint8)
        canvas[:] = preset.pad_color
    else:  # the frame itself, covering the canvas and heavily blurred
        c = max(W / w, H / h)
        big = _resize(frame, int(math.ceil(h * c)), int(math.ceil(w * c)))
        top, left = (big.shape[0] - H) // 2, (big.shape[1] - W) // 2
        canvas = cv2.GaussianBlur(big[top:top + H, left:left + W], (0, 0), sigmaX=max(H, W) / 40)
    y, x = (H - fh) // 2, (W - fw) // 2
    canvas[y:y + fh, x:x + fw] = _resize(frame, fh, fw)
    return canvas


def build_clip(frames: Sequence[np.ndarray], preset: ClipPreset) -> list[np.ndarray]:
    """The finished frame sequence: each generated frame reframed once, then timed (repeats share arrays)."""
    return timeline([reframe(f, preset) for f in frames], preset)


def for_path(preset: ClipPreset, path: str | Path) -> ClipPreset:
    """The preset with its format taken from an output path (.mp4/.webm/.gif; no suffix: PNG frames)."""
    fmt = {v: k for k, v in SUFFIX.items()}.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"unsupported output format {Path(path).suffix!r}: use .mp4, .webm, .gif or a folder")
    return preset.model_copy(update={"format": fmt})


def render_clip(frames: Sequence[np.ndarray], preset: ClipPreset, path: str | Path) -> Path:
    """Encode the generated frames with a preset; the path's suffix is replaced by the preset's format."""
    from .video import write_video

    path = Path(path)
    return write_video(build_clip(frames, preset), path.with_suffix(SUFFIX[preset.format]), fps=preset.fps)
