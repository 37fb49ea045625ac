"""Streaming clip building: the preset's frames are made one at a time and handed straight to ffmpeg.

`dreammover.presets.build_clip` returns the whole clip as a list, which is fine for a CLI clip of a few
seconds but not for 60 s at 120 fps with `retime=blend` (7,200 distinct frames). Here the same timeline is
first planned as (generated frame i, frame j, blend weight) triples, then produced lazily: each generated frame
is reframed once into a small cache, blends are made on the fly, and memory does not depend on the clip's
length. `on_frame` is called after every frame written (progress, and cancellation: it may raise).
GIFs are made for what a GIF is for (a light preview): at most `gif_side` px and `gif_fps`, with a palette
taken from a sample of the frames, so neither Python nor ffmpeg ever holds the whole clip.
"""
from __future__ import annotations

import math
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from dreammover.presets import CURVES, ClipPreset, SUFFIX, output_size, reframe

Step = tuple[int, int, float]  # (i, j, w): frame i blended with frame j at weight w (w == 0: frame i as it is)
GIF_BYTES_PER_PIXEL = 0.45     # a dithered photo GIF, measured on the sample pair at 480 px (docs/studio.md)


def motion_plan(n: int, count: int, curve: str, mode: str) -> list[Step]:
    """`presets.retime` as a plan: the same sampling positions and the same repeat/blend rule."""
    if count == n and curve == "linear":
        return [(i, i, 0.0) for i in range(n)]
    f, out = CURVES[curve], []
    for k in range(count):
        p = f(k / max(1, count - 1)) * (n - 1)
        i = min(int(math.floor(p)), n - 2) if n > 1 else 0
        w = p - i
        if mode == "repeat" or n == 1 or w < 1e-6 or w > 1 - 1e-6:
            r = min(n - 1, int(round(p)))
            out.append((r, r, 0.0))
        else:
            out.append((i, i + 1, w))
    return out


def clip_plan(n: int, preset: ClipPreset) -> list[Step]:
    """`presets.timeline` as a plan: holds at both ends, then the boomerang's mirror (its turn frame once)."""
    motion = motion_plan(n, preset.motion_frames(n), preset.curve, preset.retime)
    forward = [motion[0]] * preset.hold + motion + [motion[-1]] * preset.hold
    return forward + forward[-2::-1] if preset.loop == "boomerang" else forward


def resample(plan: list[Step], fps: float, to_fps: float) -> list[Step]:
    """The plan at a lower frame rate (same duration): every output time takes the frame shown then."""
    if to_fps >= fps:
        return plan
    count = max(1, round(len(plan) * to_fps / fps))
    return [plan[min(len(plan) - 1, int(m * fps / to_fps))] for m in range(count)]


def produce(frames: Sequence[np.ndarray], plan: list[Step], preset: ClipPreset,
            size: tuple[int, int] | None = None, cache: int = 4) -> Iterator[np.ndarray]:
    """The clip's frames in order, made as they are needed; `size` (h, w) resizes them (GIF)."""
    import cv2

    made: OrderedDict[int, np.ndarray] = OrderedDict()

    def framed(i: int) -> np.ndarray:
        if i in made:
            made.move_to_end(i)
            return made[i]
        out = reframe(np.asarray(frames[i]), preset)
        if size and out.shape[:2] != size:
            out = cv2.resize(out, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        made[i] = out
        while len(made) > cache:
            made.popitem(last=False)
        return out

    for i, j, w in plan:
        yield framed(i) if w == 0.0 else cv2.addWeighted(framed(i), 1 - w, framed(j), w, 0.0)


class FrameFolder(Sequence):
    """A job's PNG frames, read when indexed (a re-encode never loads them all)."""

    def __init__(self, folder: Path):
        self.paths = sorted(Path(folder).glob("*.png"))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        return np.asarray(Image.open(self.paths[i]).convert("RGB"))


class Output:
    """One format of one clip: its plan, frame size, fps, and a size estimate (GIFs)."""

    def __init__(self, fmt: str, n: int, preset: ClipPreset, source_hw: tuple[int, int],
                 gif_side: int = 480, gif_fps: float = 15.0):
        self.fmt, self.preset = fmt, preset.model_copy(update={"format": fmt})
        self.plan, self.fps = clip_plan(n, preset), preset.fps
        h, w = output_size(*source_hw, preset)
        self.size = None
        if fmt == "gif":
            scale = min(1.0, gif_side / max(h, w))
            h, w = max(2, int(round(h * scale))), max(2, int(round(w * scale)))
            self.size = (h, w)
            self.plan, self.fps = resample(self.plan, preset.fps, gif_fps), min(preset.fps, gif_fps)
        self.hw = (h, w)

    @property
    def frames(self) -> int:
        return len(self.plan)

    def describe(self) -> dict:
        h, w = self.hw
        out = {"width": w, "height": h, "fps": self.fps, "frames": self.frames}
        if self.fmt == "gif":
            out["estimate_bytes"] = int(GIF_BYTES_PER_PIXEL * w * h * self.frames)
        return out


def _args(out: Output, dest: Path, palette: Path | None) -> list[str]:
    from dreammover.video import FORMATS, ffmpeg_exe

    h, w = out.hw
    args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{out.fps:g}", "-i", "pipe:"]
    if out.fmt == "gif":
        if palette is None:  # pass 1: a palette from the sample
            return args + ["-vf", "palettegen=stats_mode=full", "-frames:v", "1", "-update", "1", str(dest)]
        return args + ["-i", str(palette), "-lavfi", "[0:v][1:v]paletteuse=dither=bayer:bayer_scale=4",
                       "-r", f"{out.fps:g}", str(dest)]
    opts = FORMATS[SUFFIX[out.fmt]]
    flat = [x for k, v in opts.items() for x in (f"-{k}", str(v))]
    return args + flat + ["-r", f"{out.fps:g}", str(dest)]


def _pipe(args: list[str], frames: Iterator[np.ndarray], on_frame: Callable[[], None]) -> None:
    """Feed frames to one ffmpeg process; on any error (a cancel included) kill it, then re-raise."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
        try:
            for f in frames:
                proc.stdin.write(np.ascontiguousarray(f, dtype=np.uint8).tobytes())
                on_frame()
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died early; its log says why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.wait() != 0:
            log.seek(0)
            raise RuntimeError(f"ffmpeg failed: {log.read().decode(errors='replace')[-500:]}")


def encode(frames: Sequence[np.ndarray], out: Output, path: Path, on_frame: Callable[[], None]) -> Path:
    """Write one format to `path` through a temporary name (never a half clip at `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    palette = path.with_name(f".{path.stem}.palette.png")
    try:
        if out.fmt == "gif":
            stride = max(1, math.ceil(out.frames / 48))
            _pipe(_args(out, palette, None), produce(frames, out.plan[::stride], out.preset, out.size), lambda: None)
        _pipe(_args(out, tmp, palette if out.fmt == "gif" else None),
              produce(frames, out.plan, out.preset, out.size), on_frame)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        palette.unlink(missing_ok=True)
    return path
