"""The render-parity case: fixed synthetic photos and settings, rendered by each of the four callers.

`python tests/render_parity.py OUT.npz` records what the callers render now; tests/test_render_parity.py
checks today's code against the record made before the four callers shared one render path (commit
844b0e0), so a refactor that changes any frame, even by one 8-bit level, fails.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

SETTINGS = dict(size=64, num_frames=3, lora_steps=3, lora_rank=4, num_inference_steps=10, inversion_steps=6,
                feature_step=3, frames_per_batch=2, seed=7)


def photos() -> tuple[np.ndarray, np.ndarray]:
    """Two 80x64 photos with structure (a gradient, a bright block that moves), from a fixed seed."""
    rng = np.random.default_rng(19)
    base = np.linspace(0, 255, 80, dtype=np.float32)[None, :, None] * np.ones((64, 1, 3), np.float32)
    noise = rng.normal(0, 12, (64, 80, 3)).astype(np.float32)
    a, b = base + noise, base[:, ::-1] + noise
    a[10:30, 8:28] = (230, 40, 40)
    b[24:44, 44:64] = (230, 40, 40)
    return tuple(np.clip(x, 0, 255).astype(np.uint8) for x in (a, b))


def write_photos(folder: Path) -> tuple[Path, Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "in0.png", folder / "in1.png"
    for im, p in zip(photos(), paths):
        Image.fromarray(im).save(p)
    return paths


def config():
    from dreammover.config import InterpolationConfig

    return InterpolationConfig(**SETTINGS)


def library_frames(dm, folder: Path) -> np.ndarray:
    p0, p1 = write_photos(folder)
    return np.stack(dm.interpolate(str(p0), str(p1), config()).frames)


def studio_frames(dm, folder: Path) -> np.ndarray:
    from dreammover_studio.local_backend import LocalBackend

    write_photos(folder)
    backend = LocalBackend(dm)
    try:
        frames, _ = backend.run(folder, config(), lambda ev: None)
    finally:
        backend.close()
    return np.stack(frames)


def curve_values(dm, folder: Path) -> np.ndarray:
    from dreammover.evaluation.curves import hf_energy_curves

    p0, p1 = write_photos(folder)
    curves = hf_energy_curves(dm, str(p0), str(p1), config())
    return np.array([[t, r] for fusion in ("two_level", "direct") for t, r in curves[fusion]], dtype=np.float64)


def pipeline_frames(model_dir: Path, folder: Path) -> np.ndarray:
    """The pool's tasks (in this process, no Dask), through the pair flow; its decoded frames artifact."""
    from dreammover_flows.pair import interpolate_pair
    from dreammover_tasks.artifacts import get_images
    from dreammover_tasks.models import ModelSpec

    p0, p1 = write_photos(folder)
    summary = interpolate_pair(str(p0), str(p1), str(folder / "clip.mp4"), config=config(),
                               model=ModelSpec(model=str(model_dir), device="cpu", dtype="float32"),
                               cache=str(folder / "cache"))
    return np.stack(get_images(summary["cache"]["frames"]))


def record(out: Path) -> None:
    import os

    import torch

    from dreammover import DreamMover
    from dreammover.tiny import ensure_tiny_model

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        os.environ["DREAMMOVER_HOME"] = str(work / "home")
        model_dir = ensure_tiny_model(work / "home" / "models")
        dm = DreamMover.from_pretrained(str(model_dir), device="cpu", dtype=torch.float32)
        found = {"library": library_frames(dm, work / "lib"), "studio": studio_frames(dm, work / "studio"),
                 "curves": curve_values(dm, work / "curves")}
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=180):
            found["pipeline"] = pipeline_frames(model_dir, work / "pipe")
    np.savez_compressed(out, **found)
    print({k: v.shape for k, v in found.items()})


if __name__ == "__main__":
    record(Path(sys.argv[1]))
