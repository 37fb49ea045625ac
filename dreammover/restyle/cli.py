"""`dreammover restyle`: DreamMotion (text-driven appearance editing of a clip) from the command line.

Everything that can be checked is checked before the text-to-video model loads (video readable and
not empty, frame count, mask/box size, prompts, output path): bad input is one line and exit 2.
`interpolate --restyle` reuses `prepare_restyle` / `run_restyle` on the interpolated frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

# The source prompt ŷ describes the input clip; a generic one when the user gives none (docs/restyle.md).
DEFAULT_SOURCE_PROMPT = "a video"
# A typo guard, not a limit of the method: every window of `window` frames costs steps x one
# backprop through the 3-D UNet (Zeroscope: minutes per window on an A100).
MAX_RESTYLE_FRAMES = 240
DEFAULT_FPS = 8.0  # when the input does not say (Zeroscope's clips are 8 fps)


@dataclass
class RestyleJob:
    """A checked edit: the clip, its prompts, mask and settings, ready for the model."""

    frames: list
    source_prompt: str
    target_prompt: str
    mask: object  # np.ndarray (N,H,W) in [0,1] or None
    config: object  # RestyleConfig


def restyle_config(steps: Optional[int] = None, seed: Optional[int] = None, **flags):
    """RestyleConfig from the options given (None: the library default); a bad value is one error line."""
    from pydantic import ValidationError

    from dreammover.cli import fail
    from dreammover.restyle import RestyleConfig

    given = {k: v for k, v in dict(steps=steps, seed=seed, **flags).items() if v is not None}
    try:
        return RestyleConfig(**given)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"bad restyle setting {'.'.join(map(str, first['loc']))}: {first['msg']}")


def parse_boxes(boxes: list[str], n_frames: int):
    """--box values -> one (x, y, w, h) for the whole clip, or a list of one per frame (';'-separated)."""
    from dreammover.restyle import RestyleInputError, parse_box

    parts = [p for value in boxes for p in value.split(";") if p.strip()]
    try:
        parsed = [parse_box(p.strip()) for p in parts]
    except RestyleInputError as err:
        raise RestyleInputError(f"--box: {err}") from err
    if len(parsed) == 1:
        return parsed[0]
    if len(parsed) != n_frames:
        raise RestyleInputError(f"--box: {len(parsed)} boxes for {n_frames} frames: give one box for the whole "
                                f"clip or exactly one per frame")
    return parsed


def prepare_restyle(frames: list, source_prompt: Optional[str], target_prompt: str, config,
                    mask_path: Optional[Path] = None, boxes: Optional[list[str]] = None,
                    max_frames: int = MAX_RESTYLE_FRAMES) -> RestyleJob:
    """Mask and inputs checked (check_restyle_inputs) before any model work; RestyleInputError says what is wrong."""
    from dreammover.restyle import RestyleInputError, check_restyle_inputs, mask_from_box, read_mask

    if not frames:
        raise RestyleInputError("the video has no frames (empty or unreadable)")
    if mask_path is not None and boxes:
        raise RestyleInputError("give either --mask or --box, not both")
    n, (h, w) = len(frames), frames[0].shape[:2]
    mask = None
    if mask_path is not None:
        if not Path(mask_path).is_file():
            raise RestyleInputError(f"{mask_path}: mask file not found")
        mask = read_mask(mask_path, n, h, w)
    elif boxes:
        mask = mask_from_box(parse_boxes(boxes, n), n, h, w)
    source = DEFAULT_SOURCE_PROMPT if source_prompt is None else source_prompt
    check_restyle_inputs(frames, source, target_prompt, mask, config, max_frames)
    return RestyleJob(list(frames), source, target_prompt, mask, config)


def load_restyle_model(spec: str, device: Optional[str], dtype: Optional[str], quiet: bool, on_error=None):
    """The text-to-video model (load_t2v), or one error line with the offline hint (after `on_error()`,
    which may save work done so far and return a sentence saying where)."""
    from dreammover import restyle as rs
    from dreammover.cli import fail
    from dreammover.models import ModelLoadError

    if not quiet:
        typer.echo(f"loading text-to-video model {spec!r} ...", err=True)
    try:
        return rs.load_t2v(spec, device=device, dtype=dtype)
    except ModelLoadError as err:
        saved = on_error() if on_error is not None else None
        fail(f"{err}{'; ' + saved if saved else ''}")


def run_restyle(model, job: RestyleJob, quiet: bool):
    """Preflight line, then the edit with a progress bar over iterations (steps x windows)."""
    from tqdm.auto import tqdm

    from dreammover import restyle as rs
    from dreammover.cli import fail

    h, w = job.frames[0].shape[:2]
    plan = rs.restyle_preflight(model, len(job.frames), h, w, job.config)
    if not plan.fits:
        fail(f"{plan.summary()} (flags: --checkpointing, --window)")  # the summary names the remedies; these are their flags
    if not quiet:
        typer.echo(f"plan: {plan.summary()}", err=True)
    with tqdm(total=plan.iterations, desc="restyle", unit="it", disable=quiet, leave=False) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        return rs.restyle(model, job.frames, job.source_prompt, job.target_prompt, mask=job.mask,
                          config=job.config, progress=progress)


def restyle(
    video: Path = typer.Argument(..., help="the clip to edit (.mp4, .webm, .gif, ...)"),
    output: Path = typer.Option(Path("restyled.mp4"), "-o", "--output",
                                help=".mp4, .webm, .gif, or a folder (no suffix) for PNG frames"),
    target_prompt: str = typer.Option(..., "--target-prompt", help="what the clip should look like (y)"),
    source_prompt: Optional[str] = typer.Option(
        None, "--source-prompt", show_default=False,
        help=f"what the clip shows now (ŷ) [default: {DEFAULT_SOURCE_PROMPT!r}]"),
    mask: Optional[Path] = typer.Option(None, "--mask", help="where to edit: a mask image (all frames) or a "
                                                              "mask video (one per frame), white = edit"),
    box: Optional[list[str]] = typer.Option(None, "--box", help="where to edit: x,y,w,h in pixels for the whole "
                                                                "clip; repeat it or separate with ';' for one "
                                                                "box per frame"),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, show_default=False,
                                        help="optimisation iterations per window [default: 200]"),
    seed: Optional[int] = typer.Option(None, "--seed", show_default=False, help="seed of t and ε [default: 0]"),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", show_default=False,
                                                   help="classifier-free guidance w [default: 7.5]"),
    window: Optional[int] = typer.Option(None, "--window", min=1, show_default=False,
                                         help="frames edited together (longer clips: overlapping windows)"),
    spatial_ssm: Optional[bool] = typer.Option(None, "--spatial-ssm/--no-spatial-ssm", show_default=False,
                                               help="keep each frame's structure (S-SSM) [default: on]"),
    temporal_ssm: Optional[bool] = typer.Option(None, "--temporal-ssm/--no-temporal-ssm", show_default=False,
                                                help="keep the motion (T-SSM) [default: on]"),
    mask_dds: Optional[bool] = typer.Option(None, "--mask-dds/--no-mask-dds", show_default=False,
                                            help="limit the edit to --mask/--box [default: on when given]"),
    checkpointing: Optional[bool] = typer.Option(None, "--checkpointing/--no-checkpointing", show_default=False,
                                                 help="recompute UNet activations in the backward: less memory, "
                                                      "slower [default: off]"),
    model: str = typer.Option("cerspense/zeroscope_v2_576w", "--model",
                              help="'tiny-t2v', 't2v-random', a hub id or a diffusers folder (Zeroscope layout)"),
    fps: Optional[float] = typer.Option(None, "--fps", min=0.1, show_default=False,
                                        help=f"frames per second of the output [default: the input's, else "
                                             f"{DEFAULT_FPS:g}]"),
    max_frames: int = typer.Option(MAX_RESTYLE_FRAMES, "--max-frames", min=1,
                                   help="refuse longer clips (a guard against minutes of work on a typo)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (default fp16 on CUDA)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no plan line and no progress bar"),
) -> None:
    """Edit VIDEO's appearance to match --target-prompt, keeping its structure and motion (DreamMotion).

    Video, mask, prompts and output are checked before the model loads; memory before any computing.
    """
    from dreammover.cli import fail
    from dreammover.preflight import PreflightError, check_output_path
    from dreammover.restyle import RestyleInputError
    from dreammover.video import write_video

    try:
        check_output_path(output)
    except PreflightError as err:
        fail(str(err))
    if not video.is_file():
        fail(f"{video}: file not found")
    config = restyle_config(steps, seed, guidance_scale=guidance_scale, window=window, spatial_ssm=spatial_ssm,
                            temporal_ssm=temporal_ssm, use_mask=mask_dds, checkpointing=checkpointing)
    frames, rate = read_clip(video, max_frames)
    try:
        job = prepare_restyle(frames, source_prompt, target_prompt, config, mask, box, max_frames)
    except RestyleInputError as err:
        fail(str(err))
    t2v = load_restyle_model(model, device, dtype, quiet)
    result = run_restyle(t2v, job, quiet)
    fps = fps or rate or DEFAULT_FPS
    try:
        write_video(result.frames, output, fps=fps)
    except (RuntimeError, ValueError, OSError) as err:
        fail(str(err))
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    typer.echo(f"wrote {output} ({len(result.frames)} frames at {fps:g} fps; {stages})")


def check_interpolate_restyle(target: Optional[str], steps: Optional[int], backend: str = "dreammover",
                              n_frames: int = 0):
    """`interpolate --restyle`: the restyle options checked before the interpolation starts; its config."""
    from dreammover.cli import fail

    if target is None:
        return None
    if backend != "dreammover":
        fail(f"--restyle works with --backend dreammover (got --backend {backend})")
    if not target.strip():
        fail("--restyle: the target prompt is empty: say what the clip should look like")
    if n_frames > MAX_RESTYLE_FRAMES:
        fail(f"--restyle edits at most {MAX_RESTYLE_FRAMES} frames; the clip would have {n_frames}: use fewer --frames")
    return restyle_config(steps)


def restyle_interpolated(frames: list, config, target: str, source: Optional[str], model: str,
                         device: Optional[str], dtype: Optional[str], quiet: bool, output: Path,
                         fps: float = 10.0) -> list:
    """`interpolate --restyle`: the interpolated frames edited towards `target`; if the text-to-video model
    cannot load, the interpolated clip is written beside `output` (never lose the interpolation) and exit 2."""
    from dreammover.cli import fail
    from dreammover.restyle import RestyleInputError
    from dreammover.video import write_video

    def keep_interpolation() -> str:
        kept = output.with_name(f"{output.stem}.interpolated{output.suffix}")
        write_video(frames, kept, fps=fps)
        return f"the interpolated clip is at {kept}"

    try:
        job = prepare_restyle(frames, source, target, config)
    except RestyleInputError as err:
        fail(f"--restyle: {err}; {keep_interpolation()}")
    result = run_restyle(load_restyle_model(model, device, dtype, quiet, keep_interpolation), job, quiet)
    return result.frames


def read_clip(path: Path, max_frames: int = MAX_RESTYLE_FRAMES) -> tuple[list, Optional[float]]:
    """The clip's RGB frames (dreammover.video.read_video) and its frame rate when the container gives one.

    A container that says it holds more than `max_frames` is refused before its frames are decoded
    (thousands of frames would fill the memory first); the exact count is checked again after reading.
    """
    import cv2

    from dreammover.cli import fail
    from dreammover.video import read_video

    cap = cv2.VideoCapture(str(path))
    rate, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    cap.release()
    if count and count > max_frames:
        fail(f"{path}: {int(count)} frames, more than --max-frames {max_frames}: cut the clip, or pass "
             f"--max-frames {int(count)} to edit it anyway")
    frames = read_video(path)
    if not frames:
        fail(f"{path}: no frames could be read (not a video, or an empty one)")
    if any(f.shape != frames[0].shape for f in frames):
        fail(f"{path}: frames of different sizes: not a clip this command can edit")
    return frames, rate if rate and 0 < rate < 1000 else None


def register(app: typer.Typer) -> None:
    """Add `restyle` to the core CLI (dreammover/cli.py LIBRARY_COMMANDS)."""
    app.command("restyle")(restyle)
