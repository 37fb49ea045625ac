"""Step 13 as a task: ffmpeg-encode the frames (cheap, so never cached: fps/format changes redo only this)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.video import write_video

from .artifacts import digest, get_images
from .results import FramesArtifact
from .retry import retry_options
from .storage import open_storage

FORMATS = ("mp4", "webm", "gif")


@task(name="encode-clip", cache_policy=NO_CACHE, **retry_options())
def encode_clip(frames: FramesArtifact, fps: float, fmt: str, cache: str, preset: dict | None = None) -> dict:
    """Encode to <cache>/clips/<frames key>-<fps>fps[-<preset>].<fmt>; returns its URI.

    preset: a ClipPreset (as a dict): the clip is built from the frames by the studio's and the CLI's
    code (dreammover.presets.build_clip: reframe, timing, loop) and encoded at the preset's fps.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported clip format {fmt!r}: use one of {', '.join(FORMATS)}")
    images, name = get_images(frames.uri), f"{frames.key}-{fps:g}fps"
    if preset:
        from dreammover.presets import ClipPreset, build_clip

        recipe = ClipPreset.model_validate(preset)
        images, fps = build_clip(images, recipe), recipe.fps
        name = f"{frames.key}-{recipe.name}-{digest('preset', preset)[:12]}"
    with tempfile.TemporaryDirectory(prefix="dreammover-encode-") as tmp:
        path = write_video(images, Path(tmp) / f"clip.{fmt}", fps=fps)
        uri = open_storage(cache).upload(path, f"clips/{name}.{fmt}")
    get_run_logger().info("encoded %d frames at %g fps (%s)", len(images), fps, fmt)
    return {"uri": uri, "frames": len(images), "fps": fps, "format": fmt}
