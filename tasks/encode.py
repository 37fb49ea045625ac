"""Step 13 as a task: ffmpeg-encode the frames and publish the clip at its output, written once.

Never cached (encoding is cheap, so fps/format/preset changes redo only this). The clip is encoded to
a local file and published in one step (tasks/storage.py publish_file: S3 one PUT, local a unique
hidden name renamed into place): no copy in the cache, no `.partial` object copied to the output.
The summary is written after it (tasks/upload.py), so a summary always describes a complete clip.
"""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.video import write_video

from .artifacts import get_images
from .results import FramesArtifact, PublishedClip
from .retry import retry_options
from .storage import split_uri
from .upload import store_summary, summary_uri

FORMATS = ("mp4", "webm", "gif")


@task(name="publish-clip", cache_policy=NO_CACHE, **retry_options())
def publish_clip(frames: FramesArtifact, fps: float, fmt: str, destination: str, preset: dict | None = None,
                 summary: dict | None = None) -> PublishedClip:
    """Encode the frames at `fps` and write the clip to `destination` (a URI ending in .<fmt>) once; then,
    with `summary`, the pair's summary beside it, completed with the clip's URI, frame count and fps (last:
    a summary means its clip is complete; one task for both saves a task run per pair).

    preset: a ClipPreset (as a dict): the clip is built from the frames by the studio's and the CLI's
    code (dreammover.presets.build_clip: reframe, timing, loop) and encoded at the preset's fps.
    Returns the clip's URI, frame count, fps and format, and with `summary` the summary as written.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported clip format {fmt!r}: use one of {', '.join(FORMATS)}")
    if not destination.lower().endswith(f".{fmt}"):
        raise ValueError(f"{destination}: a .{fmt} clip must be written to a name ending in .{fmt}")
    images = get_images(frames.uri)
    if preset:
        from dreammover.presets import ClipPreset, build_clip

        recipe = ClipPreset.model_validate(preset)
        images, fps = build_clip(images, recipe), recipe.fps
    store, name = split_uri(destination)
    uri = store.publish_file(name, lambda path: write_video(images, Path(path), fps=fps))
    get_run_logger().debug("encoded %d frames at %g fps (%s) -> %s", len(images), fps, fmt, uri)
    if summary is not None:
        summary = {**summary, "output": uri, "frames": len(images), "fps": fps}
        store_summary(summary, summary_uri(uri))
    return PublishedClip(uri=uri, frames=len(images), fps=fps, format=fmt, summary=summary)
