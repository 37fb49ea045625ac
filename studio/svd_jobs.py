"""Studio jobs on the SVD keyframe backend (Generative Inbetweening, dreammover/backends): loaded on first use.

The SVD model is large, so the studio only names it at start (`--svd-model`) and loads it when the first svd job
runs, on the runner's thread and the studio's device; it then stays resident beside DreamMover (one job at a time).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dreammover.backends.svd_config import SVDKeyframeConfig
from dreammover.events import EventFn

BACKENDS = ("dreammover", "svd")


def svd_stage_weights(config: SVDKeyframeConfig) -> dict[str, float]:
    """Expected cost per stage in UNet clip-evaluations: two paths per step, times CFG, times the recurrences."""
    steps = config.num_inference_steps
    recurrent = int(steps * config.noise_injection_ratio) * config.noise_injection_steps
    per_eval = 2.0 * (2 if config.guidance_scale > 1 else 1)
    return {"encode": 0.5, "denoise": per_eval * (steps + recurrent), "decode": 1.0,
            "encoding": 0.05 * config.clip_frames}


class SVDJobs:
    """The `svd` half of a LocalBackend: model name now, the SVDKeyframeInterpolator at the first job."""

    def __init__(self, model: str, device=None, dtype=None):
        self.model, self.device, self.dtype = model, device, dtype
        self.interpolator = None

    def load(self):
        if self.interpolator is None:
            from dreammover.backends import load_backend

            self.interpolator = load_backend("svd", self.model, device=self.device, dtype=self.dtype)
        return self.interpolator

    def run(self, folder: Path, config: SVDKeyframeConfig, report: EventFn) -> tuple[list[np.ndarray], dict]:
        """The job's two photos -> N+2 frames and {seconds, unet_evals}, reporting stages through `report`."""
        result = self.load().interpolate(folder / "in0.png", folder / "in1.png", config, on_event=report)
        return result.frames, {"seconds": dict(result.seconds), "unet_evals": dict(result.unet_evals)}


def job_config(settings: dict):
    """A stored job's settings -> its backend's config (jobs stored before backends existed are dreammover's)."""
    from dreammover.config import InterpolationConfig

    fields = dict(settings)
    name = fields.pop("backend", "dreammover")
    return SVDKeyframeConfig(**fields) if name == "svd" else InterpolationConfig(**fields)
