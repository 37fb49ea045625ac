"""The SVD backend in `dreammover bench`, and its own speed/memory benchmark.

    python -m dreammover.backends.bench                                   # tiny-svd on CPU
    python -m dreammover.backends.bench --model svd-random --device cuda  # SVD-XT size: 25 frames, 1024x576

In `dreammover bench --methods svd` the model comes from DREAMMOVER_SVD_MODEL (default SVD-XT) and the
SVD-specific fields from DREAMMOVER_SVD_CONFIG (a JSON/YAML file) and DREAMMOVER_SVD_CFG_<FIELD>; the
frame count, size and seed come from the bench's own config, and clips keep the inputs' aspect
(`frame="input"`) so they are scored against the same prepared pair as every other method.
"""
from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from typing import Optional

import torch
import typer

from .svd_config import SVDKeyframeConfig


@lru_cache(maxsize=1)
def _loaded(model: str, device: str | None, dtype: str | None):
    """One loaded SVD for a whole bench run: the bench asks for a method object per pair and run."""
    from .svd_keyframe import SVDKeyframeInterpolator

    return SVDKeyframeInterpolator.from_pretrained(model, device=device, dtype=dtype)


class SVDBenchMethod:
    """Adapter: DreamMover's InterpolationConfig in (frames, size, seed), the SVD backend's result out."""

    name = "svd"

    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None):
        from .svd_models import DEFAULT_SVD_MODEL

        self.model = model or os.environ.get("DREAMMOVER_SVD_MODEL", DEFAULT_SVD_MODEL)
        self.device, self.dtype = device, dtype

    def config_for(self, config) -> SVDKeyframeConfig:
        from . import load_backend_config

        return load_backend_config("svd", os.environ.get("DREAMMOVER_SVD_CONFIG"), num_frames=config.num_frames,
                                   size=config.size, seed=config.seed, keep_inputs=config.keep_inputs,
                                   frame="input")

    def interpolate(self, image0, image1, config=None, progress: bool = False):
        from ..config import InterpolationConfig

        cfg = self.config_for(config or InterpolationConfig())
        return _loaded(self.model, self.device, self.dtype).interpolate(image0, image1, cfg, progress)


def bench_svd(backend, frames: int, size: int | None, steps: int, injection: int, guidance: float) -> dict:
    """One clip on the procedural sample pair: per-stage seconds, UNet frame-evaluations, peak GPU memory."""
    from ..sample import sample_pair

    im0, im1 = sample_pair(512)
    cfg = SVDKeyframeConfig(num_frames=frames, size=size, num_inference_steps=steps, noise_injection_steps=injection,
                            guidance_scale=guidance)
    if backend.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(backend.device)
    start = time.perf_counter()
    r = backend.interpolate(im0, im1, cfg)
    peak = torch.cuda.max_memory_allocated(backend.device) / 2 ** 30 if backend.device.type == "cuda" else None
    return dict(frames=len(r.frames), size=f"{r.frames[0].shape[1]}x{r.frames[0].shape[0]}", steps=steps,
                injection=injection, guidance=guidance, total_s=round(time.perf_counter() - start, 3),
                seconds={k: round(v, 3) for k, v in r.seconds.items()}, unet_frame_evals=r.unet_evals,
                peak_mem_gb=None if peak is None else round(peak, 2))


def main(
    model: str = typer.Option("tiny-svd", "--model", help="tiny-svd, svd-random, a hub id or folder"),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    frames: int = typer.Option(23, "--frames", help="in-between frames (23 -> SVD-XT's 25-frame clip)"),
    size: Optional[int] = typer.Option(None, "--size", help="long side [default: the model's, 1024 for SVD]"),
    steps: int = typer.Option(50, "--steps"),
    injection: int = typer.Option(5, "--injection", help="noise re-injection repeats (first half of the steps)"),
    guidance: float = typer.Option(2.0, "--guidance"),
    repeats: int = typer.Option(1, "--repeats", min=1),
) -> None:
    """Print one JSON row per run (the first run includes warm-up)."""
    from .svd_keyframe import SVDKeyframeInterpolator

    backend = SVDKeyframeInterpolator.from_pretrained(model, device=device, dtype=dtype)
    for _ in range(repeats):
        print(json.dumps(dict(model=model, device=str(backend.device), dtype=str(backend.dtype),
                              **bench_svd(backend, frames, size, steps, injection, guidance))), flush=True)


if __name__ == "__main__":
    typer.run(main)
