"""`dreammover` command line: thin over the library; pipeline/evaluation commands plug in via entry points."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="DreamMover: turn two photos with large motion into a short clip.")


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit: what went wrong and what to do."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def interpolate(
    image0: Path = typer.Argument(..., help="first photo"),
    image1: Path = typer.Argument(..., help="second photo"),
    output: Path = typer.Option(Path("out.mp4"), "-o", "--output", help=".mp4, .webm, .gif, or a folder for PNGs"),
    model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                              help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
    vae: Optional[str] = typer.Option(None, "--vae", help="separate VAE (hub id, folder or file)"),
    frames: int = typer.Option(32, "--frames", min=1, help="in-between frames N (the clip has N+2)"),
    size: int = typer.Option(512, "--size", min=64, help="long side in pixels (rounded to 64)"),
    prompt: str = typer.Option("", "--prompt"),
    fps: float = typer.Option(10.0, "--fps", min=0.1),
    seed: int = typer.Option(0, "--seed"),
    frames_per_batch: int = typer.Option(8, "--frames-per-batch", min=1),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (default fp16 on CUDA)"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML file of InterpolationConfig fields"),
    keep_inputs: bool = typer.Option(False, "--keep-inputs", help="use the original photos as end frames"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
    backend: str = typer.Option("dreammover", "--backend", help="dreammover | svd (Generative Inbetweening; "
                                                                 "docs/backends.md)"),
    preset: Optional[str] = typer.Option(None, "--preset", help="clip preset (reel, story, square-loop, ...: "
                                         "dreammover/presets.py); its fps/size/timing, the -o suffix's format"),
) -> None:
    """Interpolate IMAGE0 -> IMAGE1 with the library directly (no orchestration) and encode a clip."""
    if backend != "dreammover":  # other methods build their own config type (dreammover/backends)
        from .backends.cli import interpolate_with_backend
        return interpolate_with_backend(backend, image0, image1, output, model, vae, frames, size, fps, seed,
                                        device, dtype, config_file, keep_inputs, quiet)
    from .config_io import load_config_file
    from .images import ImageInputError, load_image
    from .models import ModelLoadError
    from .pipeline import DreamMover
    from .video import write_video

    try:
        im0, im1 = load_image(image0), load_image(image1)
    except ImageInputError as err:
        fail(str(err))
    if preset is not None:
        from .presets import for_path, get_preset, render_clip
        try:
            clip_preset = for_path(get_preset(preset), output)
        except ValueError as err:
            fail(str(err))
    overrides = dict(num_frames=frames, size=size, prompt=prompt, seed=seed, frames_per_batch=frames_per_batch,
                     keep_inputs=keep_inputs)
    try:
        config = load_config_file(config_file, **overrides)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {err}")
    progress = not quiet
    if progress:
        typer.echo(f"loading model {model!r} ...", err=True)
    try:
        dm = DreamMover.from_pretrained(model, vae=vae, device=device, dtype=dtype)
    except ModelLoadError as err:
        fail(str(err))
    result = dm.interpolate(im0, im1, config, progress=progress)
    try:
        if preset is not None:
            output, fps = render_clip(result.frames, clip_preset, output), clip_preset.fps
        else:
            write_video(result.frames, output, fps=fps)
    except (RuntimeError, ValueError) as err:
        fail(str(err))
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    typer.echo(f"wrote {output} ({len(result.frames)} frames at {fps:g} fps; {stages})")


@app.command("make-sample")
def make_sample(folder: Path = typer.Argument(Path("examples/pair")), size: int = typer.Option(256)) -> None:
    """Write a procedural sample pair (a ball and a bar moving over a gradient) as 0.png / 1.png."""
    from .sample import write_sample_pair

    for p in write_sample_pair(folder, size):
        typer.echo(str(p))


def _register_plugins() -> None:
    """Commands from other layers (Prefect flows, evaluation) register through the `dreammover.cli` entry point."""
    from importlib.metadata import entry_points

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
