"""Weight-free baselines behind DreamMover's interface, and the Table-3 ablations as config switches.

Every method object has `interpolate(img0, img1, config, progress=False) -> InterpolationResult`, so the
benchmark treats DreamMover, its ablations and the baselines alike.
"""
from __future__ import annotations

import time
from types import MappingProxyType
from typing import Mapping, Protocol

import numpy as np
import torch

from ..config import InterpolationConfig
from ..correspondence import estimate_flow_opencv
from ..denoise import chunks
from ..fusion import fuse_high_level
from ..images import load_and_prepare, to_tensor, to_uint8
from ..pipeline import InterpolationResult

METHODS = ("dreammover", "crossfade", "classic", "svd")
# Table 3 of the paper: each ablation switches off one component of the full method.
ABLATIONS: Mapping[str, Mapping] = MappingProxyType({
    "opencv_flow": {"flow": "dis"},               # classical flow (OpenCV DIS) instead of diffusion features
    "direct_fusion": {"fusion": "direct"},        # one softmax-splat fusion of z_T instead of two-level fusion
    "no_ref_attention": {"reference_attention": False},
    "no_lora": {"lora": False},
})
# Selectable by name but not part of `--ablations all` (not in Table 3): the other classical flow.
EXTRA_ABLATIONS: Mapping[str, Mapping] = MappingProxyType({"farneback_flow": {"flow": "farneback"}})


class Interpolator(Protocol):
    def interpolate(self, image0, image1, config: InterpolationConfig | None = None,
                    progress: bool = False) -> InterpolationResult: ...


def _prepared(image0, image1, config: InterpolationConfig) -> tuple[np.ndarray, np.ndarray]:
    return load_and_prepare(image0, image1, config.size, config.resize_policy)


def _zero_flows(img: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.zeros(2, *img.shape[:2])
    return z, z.clone()


class Crossfade:
    """Linear blend (1-delta) I0 + delta I1: the no-motion lower bound every interpolator should beat."""

    name = "crossfade"

    def interpolate(self, image0, image1, config: InterpolationConfig | None = None,
                    progress: bool = False) -> InterpolationResult:
        config = config or InterpolationConfig()
        t0 = time.perf_counter()
        a, b = _prepared(image0, image1, config)
        t1 = time.perf_counter()
        fa, fb = a.astype(np.float32), b.astype(np.float32)
        mids = [np.clip(np.rint((1 - d) * fa + d * fb), 0, 255).astype(np.uint8) for d in config.deltas]
        t2 = time.perf_counter()
        return InterpolationResult([a, *mids, b], config.deltas, _zero_flows(a),
                                   {"prepare": t1 - t0, "blend": t2 - t1}, {}, [], config)


class ClassicFlow:
    """Classical frame interpolation stand-in: OpenCV flow both ways + softmax splatting (Eq. 4/7) in pixel space."""

    name = "classic"

    def __init__(self, flow_method: str = "dis"):
        self.flow_method = flow_method

    def interpolate(self, image0, image1, config: InterpolationConfig | None = None,
                    progress: bool = False) -> InterpolationResult:
        config = config or InterpolationConfig()
        t0 = time.perf_counter()
        a, b = _prepared(image0, image1, config)
        t1 = time.perf_counter()
        f01, f10 = estimate_flow_opencv(a, b, a.shape[:2], method=self.flow_method)
        t2 = time.perf_counter()
        x = to_tensor([a, b])  # [-1, 1]: the scale the splatting metric's alpha was chosen for
        mids = []
        for part in chunks(config.deltas, config.frames_per_batch):
            # Same fusion rule as DreamMover's high level (Eq. 7): blend where both land, else the side that lands.
            fused = fuse_high_level(x[0:1], x[1:2], f01, f10, part, config.splat_alpha)
            mids += to_uint8((fused / 2 + 0.5).clamp(0, 1))
        t3 = time.perf_counter()
        return InterpolationResult([a, *mids, b], config.deltas, (f01, f10),
                                   {"prepare": t1 - t0, "flow": t2 - t1, "splat": t3 - t2}, {}, [], config)


def ablation_config(config: InterpolationConfig, ablation: str | None) -> InterpolationConfig:
    """The config with one Table-3 component switched off (None = the full method)."""
    if ablation is None:
        return config
    switches = {**ABLATIONS, **EXTRA_ABLATIONS}
    if ablation not in switches:
        raise ValueError(f"unknown ablation {ablation!r}: use one of {', '.join(switches)}")
    # validated, not copied: model_copy(update=...) would skip the field checks
    return InterpolationConfig.model_validate({**config.model_dump(), **switches[ablation]})


def make_method(name: str, model=None, flow_method: str = "dis") -> Interpolator:
    """`method=` lookup: 'dreammover' needs a loaded DreamMover (`model`), the baselines need no weights."""
    if name == "crossfade":
        return Crossfade()
    if name == "classic":
        return ClassicFlow(flow_method)
    if name == "svd":  # Generative Inbetweening (dreammover/backends); its SVD model: DREAMMOVER_SVD_MODEL
        from ..backends.bench import SVDBenchMethod
        return SVDBenchMethod()
    if name == "dreammover":
        if model is None:
            raise ValueError("method 'dreammover' needs a model (DreamMover.from_pretrained(...))")
        return model
    raise ValueError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
