"""CLI glue for the backends: `interpolate --backend svd` and `dreammover finetune-backward` (Alg. 1).

`finetune-backward` is registered through the `dreammover.cli` entry point, like the pipeline commands.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

# DreamMover's model default; with --backend svd it means "the backend's own default".
_SD_DEFAULT = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def interpolate_with_backend(backend: str, image0: Path, image1: Path, output: Path, model: str | None = None,
                             vae: str | None = None, frames: int | None = None, size: int | None = None,
                             fps: float | None = None, seed: int | None = None, device: str | None = None,
                             dtype: str | None = None, config_file: Path | None = None,
                             keep_inputs: bool | None = None, quiet: bool = False) -> None:
    """`dreammover interpolate --backend NAME`: build the backend's config, run it, encode the clip."""
    from ..cli import fail
    from ..images import ImageInputError, load_image
    from ..models import ModelLoadError
    from ..video import write_video
    from . import BACKENDS, default_model, load_backend, load_backend_config

    if backend not in BACKENDS:
        fail(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    try:
        im0, im1 = load_image(image0), load_image(image1)
    except ImageInputError as err:
        fail(str(err))
    overrides = {k: v for k, v in dict(num_frames=frames, size=size, seed=seed, keep_inputs=keep_inputs).items()
                 if v is not None}
    try:
        config = load_backend_config(backend, config_file, **overrides)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {err}")
    model = default_model(backend) if model in (None, _SD_DEFAULT) else model
    if not quiet:
        typer.echo(f"loading {backend} model {model!r} ...", err=True)
    try:
        method = load_backend(backend, model, vae=vae, device=device, dtype=dtype)
    except (ModelLoadError, ValueError) as err:
        fail(str(err))
    try:
        result = method.interpolate(im0, im1, config, progress=not quiet)
    except ValueError as err:  # e.g. backward weights that do not fit the model
        fail(str(err))
    fps = fps if fps is not None else float(getattr(config, "fps", 10))
    try:
        write_video(result.frames, output, fps=fps)
    except (RuntimeError, ValueError) as err:
        fail(str(err))
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items())
    typer.echo(f"wrote {output} ({len(result.frames)} frames at {fps:g} fps; {stages})")


def register(app: typer.Typer) -> None:
    """Add `finetune-backward` to the `dreammover` app."""

    @app.command("finetune-backward")
    def finetune_backward_cmd(
        videos_dir: Path = typer.Argument(..., help="folder of videos (files, or folders of frame images)"),
        output: Path = typer.Option(..., "-o", "--output", help="W_v/W_o weights to write (.safetensors)"),
        model: str = typer.Option("stabilityai/stable-video-diffusion-img2vid", "--model",
                                  help="SVD to fine-tune: hub id, diffusers folder, 'tiny-svd'"),
        frames: int = typer.Option(14, "--frames", min=2, help="frames N per training clip"),
        stride: int = typer.Option(1, "--stride", min=1, help="frame step inside a clip (released script: 2)"),
        steps: int = typer.Option(15000, "--steps", min=1),
        lr: float = typer.Option(1e-4, "--lr"),
        size: int = typer.Option(1024, "--size", min=64, help="long side; clips are centre-cropped to 16:9"),
        seed: int = typer.Option(0, "--seed"),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (trained weights stay fp32)"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Alg. 1: fine-tune only W_v/W_o of SVD's temporal self-attention into a backward-motion model."""
        from tqdm.auto import tqdm

        from ..cli import fail
        from ..models import ModelLoadError
        from .backward_weights import save_backward_weights
        from .finetune import FinetuneSettings, find_videos, finetune_backward
        from .svd_keyframe import SVDKeyframeInterpolator

        if output.suffix != ".safetensors":
            fail(f"{output}: the output must be a .safetensors file")
        s = FinetuneSettings(num_frames=frames, stride=stride, steps=steps, lr=lr, size=size, seed=seed)
        try:
            videos = find_videos(videos_dir, (frames - 1) * stride + 1)
        except FileNotFoundError as err:
            fail(str(err))
        try:
            backend = SVDKeyframeInterpolator.from_pretrained(model, device=device, dtype=dtype)
        except (ModelLoadError, ValueError) as err:
            fail(str(err))
        bar = tqdm(total=steps, desc="backward fine-tuning", disable=quiet)
        weights, losses = finetune_backward(
            backend, videos_dir, s, on_step=lambda i, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.4f}")))
        bar.close()
        save_backward_weights(weights, output, dict(model=backend.components.identity, frames=frames, stride=stride,
                                                    steps=steps, lr=lr, videos=len(videos)))
        typer.echo(f"wrote {output} (W_v/W_o of {len(weights.keys) // 2} temporal attention layers; "
                   f"{steps} steps on {len(videos)} videos; last loss {losses[-1]:.4f})")
