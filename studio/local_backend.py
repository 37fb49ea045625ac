"""In-process jobs: one loaded DreamMover (and optionally the SVD backend), the last few fitted pairs (LoRA + PairState) kept.

A job that changes only N (or other per-frame settings) reuses the cached LoRA and inversion/flow of the same
photos; `stage_weights` is the expected cost per stage that the runner turns into progress and an ETA.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from dreammover.config import INVERSION_FIELDS, InterpolationConfig
from dreammover.events import Event
from dreammover.state import FittedPair

from .restyle_jobs import RestyleJobs, RestyleSettings
from .svd_jobs import SVDJobs, SVDKeyframeConfig

Report = Callable[[Event], None]


def stage_weights(config: InterpolationConfig, reuse_pair: bool) -> dict[str, float]:
    """Expected cost per stage in UNet image-evaluations (a LoRA step is forward + backward, about 3)."""
    n, k, s = config.num_frames, config.frames_per_batch, config.inversion_steps
    k = k if isinstance(k, int) else n  # 'auto' is decided on the device at denoise time; one chunk is the estimate
    chunks = [min(k, n - i) for i in range(0, n, k)]
    pair = {"lora": 6.0 * config.lora_steps * config.lora, "inversion": 2.0 * s + 2, "flow": 1.0}
    return {**({} if reuse_pair else pair), "denoise": float(sum((2 + c) * s for c in chunks)),
            "decode": n + 2.0, "encoding": 0.5 * (n + 2)}


class LocalBackend:
    """Runs jobs in this process on one loaded DreamMover; keeps the last few pairs' LoRA + PairState.

    With `svd` (an SVDJobs), jobs whose settings say backend=svd run on the SVD keyframe backend instead;
    with `restyle` (a RestyleJobs), restyle jobs run on the text-to-video model (studio.restyle_jobs).
    """

    def __init__(self, dm, keep_pairs: int = 2, svd: SVDJobs | None = None, restyle: RestyleJobs | None = None):
        self.dm, self.keep, self.svd, self.restyle = dm, keep_pairs, svd, restyle
        self.pairs: OrderedDict[str, FittedPair] = OrderedDict()
        self.unet_calls = 0  # every UNet forward of this backend (tests check re-renders add none)
        self._hook = dm.components.unet.register_forward_hook(
            lambda *a: setattr(self, "unet_calls", self.unet_calls + 1))

    def close(self) -> None:
        self._hook.remove()

    def reuses_pair(self, folder: Path, config: InterpolationConfig) -> bool:
        if isinstance(config, SVDKeyframeConfig):
            return False
        return self._key(folder, config) in self.pairs

    def _key(self, folder: Path, config: InterpolationConfig) -> str:
        h = hashlib.sha256()
        for name in ("in0.png", "in1.png"):
            h.update((folder / name).read_bytes())
        h.update(repr(sorted(config.subset(INVERSION_FIELDS).items())).encode())
        return h.hexdigest()

    def run(self, folder: Path, config: InterpolationConfig, report: Report) -> tuple[list[np.ndarray], dict]:
        """Steps 0-12 on the library's render path (as `interpolate`), the fitted pair (steps 1-5) cached."""
        from dreammover.profiling import StageProfile

        if isinstance(config, RestyleSettings):
            if self.restyle is None:
                raise RuntimeError("this studio has no restyle model: start it with --restyle-model")
            return self.restyle.run(folder, config, report)
        if isinstance(config, SVDKeyframeConfig):
            if self.svd is None:
                raise RuntimeError("this studio has no SVD model: start it with --svd-model")
            return self.svd.run(folder, config, report)
        dm, profile = self.dm, StageProfile(self.dm.device)
        images = dm.prepare(folder / "in0.png", folder / "in1.png", config)
        key = self._key(folder, config)
        if key in self.pairs:
            pair = self.pairs[key]
            self.pairs.move_to_end(key)
            dm.use_lora(pair.lora, config.lora_rank)
        else:
            pair = dm.fit_pair(images, config, profile, on_event=report)
            self.pairs[key] = pair
            while len(self.pairs) > self.keep:
                self.pairs.popitem(last=False)
        return dm.render(pair, config.deltas, config, profile, on_event=report), profile.as_dict()

    def preview(self, latent) -> np.ndarray:
        """One VAE decode of one clean-latent estimate: the cheap preview."""
        return self.dm.decode(latent)[0]

    def release(self) -> None:
        import torch

        if self.dm.device.type == "cuda":
            torch.cuda.empty_cache()
