"""`dreammover` command line: thin over the library; pipeline/evaluation commands plug in via entry points."""
from __future__ import annotations

import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from .preflight import MAX_FRAMES

# Plain click help: typer's rich panels print every flag as `<bool>`, which reads as if it took a value.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="DreamMover: turn two photos with large motion into a short clip.")


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: what went wrong and what to do."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def require_extra(extra: str, *modules: str) -> None:
    """Exit with the install command when an app's optional dependencies (`pip install 'dreammover[extra]'`) are missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"this command needs {', '.join(missing)}: pip install -c constraints.txt 'dreammover[{extra}]'")


def _default(field: str, shown: str | None = None) -> str:
    """Help suffix naming the library default an unset option falls back to (after --config and env)."""
    from .config import InterpolationConfig

    return f"  [default: {shown or repr(InterpolationConfig.model_fields[field].default)}]"


@contextmanager
def say_warnings():
    """Input warnings (transparency flattened, upscaling, ...) as one 'warning:' line each, when they happen."""
    from .images import ImageInputWarning

    with warnings.catch_warnings():  # restores the filters and showwarning on exit
        warnings.simplefilter("default", ImageInputWarning)  # each distinct message once
        show = warnings.showwarning

        def one_line(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, ImageInputWarning):
                typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = one_line
        yield


def load_config(config_file: Optional[Path], defaults: Optional[dict] = None, **overrides):
    """file < DREAMMOVER_CFG_* < explicit options (None = not given); a bad value is one error line."""
    from .config_io import load_config_file

    try:
        return load_config_file(config_file, defaults=defaults, **overrides)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {' '.join(str(err).split())}")


def check_frames(config, max_frames: int) -> None:
    """Refuse a frame count above --max-frames, saying what it would cost."""
    from .preflight import unet_passes

    if config.num_frames <= max_frames:
        return
    passes, ref = sum(unet_passes(config).values()), sum(unet_passes(config.model_copy(
        update={"num_frames": 32})).values())
    fail(f"--frames {config.num_frames} is above --max-frames {max_frames}: ~{passes} UNet passes "
         f"({passes / ref:.0f}x a 32-frame clip) and {config.num_frames + 2} frames held in memory; "
         f"pass --max-frames {config.num_frames} to run it anyway")


def check_plan(config, image_hw, components, quiet: bool) -> None:
    """Estimate memory and UNet work before computing; refuse (with a size that fits) what cannot fit."""
    from .preflight import largest_size_that_fits, plan_run

    plan = plan_run(config, image_hw, components)
    if not plan.fits:
        fits = largest_size_that_fits(config, image_hw, components)
        h, w = plan.size_hw
        advice = (f"use --size {fits} or less" if fits else
                  "use fewer --frames, a smaller --frames-per-batch or a device with more memory")
        why = "; ".join(plan.notes) or (f"~{plan.peak_bytes / 2**30:.1f} GiB at the {plan.peak_stage} stage, "
                                        f"{(plan.available_bytes or 0) / 2**30:.1f} GiB available")
        fail(f"--size {config.size} ({w}x{h}) with {config.num_frames} frames will not fit in memory ({why}): "
             f"{advice}")
    if not quiet:
        typer.echo(f"plan: {plan.summary()}", err=True)


@app.command()
def interpolate(
    image0: Path = typer.Argument(..., help="first photo"),
    image1: Path = typer.Argument(..., help="second photo"),
    output: Path = typer.Option(Path("out.mp4"), "-o", "--output",
                                help=".mp4, .webm, .gif, or a folder (no suffix) for PNG frames"),
    model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                              help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
    vae: Optional[str] = typer.Option(None, "--vae", help="separate VAE (hub id, folder or file)"),
    frames: Optional[int] = typer.Option(None, "--frames", min=1, show_default=False,
                                         help="in-between frames N (the clip has N+2)" + _default("num_frames")),
    size: Optional[int] = typer.Option(None, "--size", min=64, show_default=False,
                                       help="long side in pixels (rounded to 64)" + _default("size")),
    prompt: Optional[str] = typer.Option(None, "--prompt", show_default=False,
                                         help="text condition of every frame" + _default("prompt")),
    fps: float = typer.Option(10.0, "--fps", min=0.1, help="frames per second of the clip"),
    seed: Optional[int] = typer.Option(None, "--seed", show_default=False,
                                       help="seed of the LoRA fit" + _default("seed")),
    frames_per_batch: Optional[int] = typer.Option(
        None, "--frames-per-batch", min=1, show_default=False,
        help="in-between frames denoised together: more is faster, needs more memory" + _default("frames_per_batch")),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (default fp16 on CUDA)"),
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="JSON/YAML file of InterpolationConfig fields; DREAMMOVER_CFG_<FIELD> env vars "
                               "override it, options given here override both"),
    keep_inputs: Optional[bool] = typer.Option(
        None, "--keep-inputs/--no-keep-inputs", show_default=False,
        help="end frames: the prepared photos themselves, or their reconstructions"
             + _default("keep_inputs", "--no-keep-inputs")),
    max_frames: int = typer.Option(MAX_FRAMES, "--max-frames", min=1,
                                   help="refuse more in-between frames than this (a guard against typos)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no plan line and no progress bars"),
    backend: str = typer.Option("dreammover", "--backend", help="dreammover | svd (Generative Inbetweening; "
                                                                "docs/backends.md)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="clip preset (reel, story, square-loop, ...: "
                                         "dreammover/presets.py); its fps/size/timing, the -o suffix's format"),
    restyle: Optional[str] = typer.Option(None, "--restyle", help="then restyle the clip to this target prompt "
                                          "(DreamMotion, docs/restyle.md)"),
    restyle_source: Optional[str] = typer.Option(None, "--restyle-source", help="source prompt of --restyle"),
    restyle_model: str = typer.Option("cerspense/zeroscope_v2_576w", "--restyle-model",
                                      help="text-to-video model of --restyle: 'tiny-t2v', a hub id or a folder"),
    restyle_steps: Optional[int] = typer.Option(None, "--restyle-steps", min=1, help="iterations of --restyle"),
) -> None:
    """Interpolate IMAGE0 -> IMAGE1 with the library directly (no orchestration) and encode a clip.

    Settings come from --config, then DREAMMOVER_CFG_<FIELD> variables, then the options given here.
    Output, settings and images are checked before the model loads, memory before any computing.
    """
    if restyle is not None:  # checked before any work; the edit runs on the interpolated frames
        from .restyle.cli import check_interpolate_restyle, restyle_interpolated
        restyle_config = check_interpolate_restyle(restyle, restyle_steps, backend)
    if backend != "dreammover":  # other methods build their own config type (dreammover/backends)
        from .backends.cli import interpolate_with_backend
        return interpolate_with_backend(backend, image0, image1, output, model, vae, frames, size, fps, seed,
                                        device, dtype, config_file, keep_inputs, quiet)
    from .images import ImageInputError, ImageInputWarning, load_image, prepare_pair
    from .models import ModelLoadError
    from .pipeline import DreamMover
    from .preflight import PreflightError, check_output_path
    from .video import write_video

    try:
        check_output_path(output)
    except PreflightError as err:
        fail(str(err))
    if preset is not None:
        from .presets import for_path, get_preset, render_clip
        try:
            clip_preset = for_path(get_preset(preset), output)
        except ValueError as err:
            fail(str(err))
    config = load_config(config_file, num_frames=frames, size=size, prompt=prompt, seed=seed,
                         frames_per_batch=frames_per_batch, keep_inputs=keep_inputs)
    check_frames(config, max_frames)
    if restyle is not None:
        check_interpolate_restyle(restyle, restyle_steps, backend, n_frames=config.num_frames + 2)
    with say_warnings():
        try:
            im0, im1 = load_image(image0), load_image(image1)
        except ImageInputError as err:
            fail(str(err))
        prepare_pair(im0, im1, config.size, config.resize_policy)  # cheap: its warnings come before any work
    progress = not quiet
    if progress:
        typer.echo(f"loading model {model!r} ...", err=True)
    try:
        dm = DreamMover.from_pretrained(model, vae=vae, device=device, dtype=dtype)
    except ModelLoadError as err:
        fail(str(err))
    check_plan(config, im0.shape[:2], dm.components, quiet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageInputWarning)  # already said above
        result = dm.interpolate(im0, im1, config, progress=progress)
    out_frames = result.frames
    if restyle is not None:
        del dm  # one model in memory at a time: the text-to-video model loads next
        out_frames = restyle_interpolated(out_frames, restyle_config, restyle, restyle_source, restyle_model,
                                          device, dtype, quiet, output, fps)
    try:
        if preset is not None:
            output, fps = render_clip(out_frames, clip_preset, output), clip_preset.fps
        else:
            write_video(out_frames, output, fps=fps)
    except (RuntimeError, ValueError, OSError) as err:
        fail(str(err))
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    typer.echo(f"wrote {output} ({len(out_frames)} frames at {fps:g} fps; {stages})")


@app.command("make-sample")
def make_sample(folder: Path = typer.Argument(Path("examples/pair"), help="folder to write 0.png and 1.png into"),
                size: int = typer.Option(256, "--size", min=64, help="side of the square images in pixels")) -> None:
    """Write a procedural sample pair (a ball and a bar moving over a gradient) as 0.png / 1.png."""
    from .sample import write_sample_pair

    for p in write_sample_pair(folder, size):
        typer.echo(str(p))


# Library units with commands of their own (restyle, discover): each module has register(app).
LIBRARY_COMMANDS = ("dreammover.restyle.cli", "dreammover.discover.cli")


def _register_plugins() -> None:
    """Commands from other layers (Prefect flows, evaluation) register through the `dreammover.cli` entry point."""
    import importlib
    from importlib.metadata import entry_points

    for name in LIBRARY_COMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is not None and name.startswith(err.name):
                continue  # the unit is not part of this build
            raise
        module.register(app)
    for ep in entry_points(group="dreammover.cli"):
        try:
            ep.load()(app)
        except ImportError as err:  # an optional layer that is not installed must not break the core CLI
            print(f"warning: commands from {ep.name!r} unavailable: {err}", file=sys.stderr)


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _register_plugins()
    app()


if __name__ == "__main__":
    main()
