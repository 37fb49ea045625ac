"""Clip metrics of DreamMover's evaluation (Sec. 4.2, supp. C): WE, WE_mid, high-frequency energy, LPIPS/FID glue.

Pixel scale of the warping errors: frames are taken in [0, 1] and the mean squared error is multiplied
by `WE_SCALE` (100). On the authors' reference clips (33 frames, 512 px, DIS flow) this gives WE ~0.012
and WE_mid ~0.15, against the paper's Table 1 (WE 0.2069, WE_mid 0.3687): WE_mid is within ~2.4x, WE is
~17x lower and depends strongly on frame spacing and the flow estimator, so compare WE only within one
bench run. [0, 255] would be ~65000x larger, plain [0, 1] 100x smaller. See docs/evaluation.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..correspondence import estimate_flow_opencv
from ..splatting import backwarp

WE_SCALE = 100.0
FLOW_METHODS = ("dis", "farneback")


def to_float(frame: np.ndarray) -> torch.Tensor:
    """uint8 RGB [H,W,3] -> float [1,3,H,W] in [0, 1] (the pixel range the WE scale refers to)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 frame [H,W,3], got {frame.dtype} {frame.shape}")
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float() / 255.0


def flow_pair(a: np.ndarray, b: np.ndarray, method: str = "dis") -> tuple[torch.Tensor, torch.Tensor]:
    """Classical optical flow a->b and b->a at full resolution, [1,2,H,W] each (no weights needed)."""
    if method not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {method!r}: use one of {FLOW_METHODS}")
    fab, fba = estimate_flow_opencv(a, b, a.shape[:2], method=method)
    return fab[None].float(), fba[None].float()


def non_occlusion_mask(flow_ab: torch.Tensor, flow_ba: torch.Tensor) -> torch.Tensor:
    """Forward-backward check (Sundaram et al. 2010, used by Lai et al. 2018): 1 where p -> p+F_ab -> back lands on p.

    A pixel is occluded when |F_ab + F_ba(p+F_ab)|^2 > 0.01 (|F_ab|^2 + |F_ba(p+F_ab)|^2) + 0.5;
    pixels whose target leaves the frame are masked too (nothing there to compare with).
    """
    back = backwarp(flow_ba, flow_ab)
    lhs = (flow_ab + back).pow(2).sum(1, keepdim=True)
    rhs = 0.01 * (flow_ab.pow(2).sum(1, keepdim=True) + back.pow(2).sum(1, keepdim=True)) + 0.5
    _, _, h, w = flow_ab.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=flow_ab.dtype), torch.arange(w, dtype=flow_ab.dtype),
                            indexing="ij")
    tx, ty = xs + flow_ab[:, 0:1], ys + flow_ab[:, 1:2]
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return ((lhs <= rhs) & inside).float()


def pair_warping_error(target: np.ndarray, source: np.ndarray, flow_method: str = "dis") -> float:
    """Lai et al. 2018 E_warp(target, source): masked MSE between `target` and `source` warped onto it, [0,1] pixels."""
    if target.shape != source.shape:
        raise ValueError(f"frames differ in shape: {target.shape} vs {source.shape}")
    f_ts, f_st = flow_pair(target, source, flow_method)
    mask = non_occlusion_mask(f_ts, f_st)
    warped = backwarp(to_float(source), f_ts)
    sq = (to_float(target) - warped).pow(2).mean(1, keepdim=True)  # mean over RGB: a per-pixel MSE
    n = float(mask.sum())
    # A fully occluded pair has no comparable pixels; NaN says "undefined" instead of a fake 0.
    return float((sq * mask).sum()) / n if n > 0 else float("nan")


def warping_error(frames: Sequence[np.ndarray], scale: float = WE_SCALE, flow_method: str = "dis") -> float:
    """WE (Lai et al. 2018, DreamMover supp. C): mean over t of E_warp(V_t, V_{t+1}), times `scale`."""
    if len(frames) < 2:
        raise ValueError("warping error needs at least two frames")
    errs = [pair_warping_error(frames[t], frames[t + 1], flow_method) for t in range(len(frames) - 1)]
    return scale * float(np.nanmean(errs)) if not all(np.isnan(errs)) else float("nan")


def middle_indices(n: int) -> tuple[int, int]:
    """The two frames nearest delta = 1/2, earlier first; an odd-length clip's single centre frame serves as both."""
    if n < 3:
        raise ValueError("a clip needs at least one in-between frame")
    return (n - 1) // 2, n // 2


def we_mid(frames: Sequence[np.ndarray], input0: np.ndarray, input1: np.ndarray,
           scale: float = WE_SCALE, flow_method: str = "dis") -> float:
    """WE_mid (supp. C): earlier middle frame warped to I0, later one to I1; masked MSEs averaged, times `scale`."""
    a, b = middle_indices(len(frames))
    errs = [pair_warping_error(input0, frames[a], flow_method), pair_warping_error(input1, frames[b], flow_method)]
    return scale * float(np.nanmean(errs))


def _gray(img: np.ndarray) -> np.ndarray:
    arr = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else np.asarray(img, dtype=np.float64)
    return arr.mean(axis=2) if arr.ndim == 3 else arr


def high_frequency_energy(img: np.ndarray) -> float:
    """Fig. 5: sum of the grey image's centred-spectrum amplitudes outside the centre quarter (middle h/2 x w/2)."""
    amp = np.abs(np.fft.fftshift(np.fft.fft2(_gray(img))))
    h, w = amp.shape
    low = amp[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2].sum()
    return float(amp.sum() - low)


def high_frequency_ratio(img: np.ndarray, reference: np.ndarray) -> float:
    """Fig. 5 ratio: high-frequency energy of `img` relative to the input image's (1 = as detailed as the input)."""
    ref = high_frequency_energy(reference)
    return high_frequency_energy(img) / ref if ref > 0 else float("nan")


def lpips_mid(frames: Sequence[np.ndarray], input0: np.ndarray, input1: np.ndarray, lpips) -> float:
    """LPIPS (Sec. 4.2): each of the two middle frames against both inputs, the four distances averaged."""
    a, b = middle_indices(len(frames))
    mids = [frames[a], frames[b]] if a != b else [frames[a]]
    return float(np.mean([lpips(m, x) for m in mids for x in (input0, input1)]))


@dataclass
class ClipScores:
    """Per-clip metric values; None = not computed (the reason is recorded next to it by the runner)."""

    we: float | None = None
    we_mid: float | None = None
    lpips: float | None = None
    hf_ratio: float | None = None

    def as_dict(self) -> dict:
        return {"we": self.we, "we_mid": self.we_mid, "lpips": self.lpips, "hf_ratio": self.hf_ratio}


def score_clip(frames: Sequence[np.ndarray], input0: np.ndarray, input1: np.ndarray, scale: float = WE_SCALE,
               flow_method: str = "dis", lpips=None) -> ClipScores:
    """All per-clip metrics of one clip against its (size-matched) inputs; LPIPS only when a model is given."""
    input0, input1 = match_size(input0, frames[0]), match_size(input1, frames[0])
    a, b = middle_indices(len(frames))
    hf = np.mean([high_frequency_ratio(frames[i], ref) for i, ref in ((a, input0), (b, input1))])
    return ClipScores(
        we=warping_error(frames, scale, flow_method),
        we_mid=we_mid(frames, input0, input1, scale, flow_method),
        lpips=lpips_mid(frames, input0, input1, lpips) if lpips is not None else None,
        hf_ratio=float(hf),
    )


def match_size(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Resize `img` to `like`'s size (inputs vs a clip rendered at a working resolution)."""
    if img.shape[:2] == like.shape[:2]:
        return img
    import cv2

    h, w = like.shape[:2]
    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)
