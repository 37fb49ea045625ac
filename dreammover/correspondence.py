"""Dense correspondence from diffusion features (Eq. 5), plus a classical OpenCV estimator for ablations."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def upsample_features(feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly upsample [B,C,h,w] features to the latent size (align_corners=False)."""
    return F.interpolate(feat.float(), size=size, mode="bilinear", align_corners=False)


def estimate_flow(feat0: torch.Tensor, feat1: torch.Tensor, chunk_rows: int = 4096):
    """Eq. 5: F^{0->1}(p) = argmax_q <f0(p), f1(q)> - p on L2-normalised features, both directions.

    feat0, feat1: [C,H,W]. Returns (flow01, flow10), each [2,H,W] as (x, y) pixel displacements.
    One chunked (HW x C) @ (C x HW) product: row argmax gives 0->1, a running column argmax 1->0.
    """
    c, h, w = feat0.shape
    f0 = F.normalize(feat0.reshape(c, -1).t().float(), dim=1)   # [HW, C]
    f1 = F.normalize(feat1.reshape(c, -1).float(), dim=0)       # [C, HW]
    n = h * w
    idx01 = torch.empty(n, dtype=torch.long, device=f0.device)
    col_val = torch.full((n,), -float("inf"), device=f0.device)
    col_idx = torch.zeros(n, dtype=torch.long, device=f0.device)
    for start in range(0, n, chunk_rows):
        sim = f0[start:start + chunk_rows] @ f1                 # [rows, HW]
        idx01[start:start + chunk_rows] = sim.argmax(dim=1)
        best_rows = sim.argmax(dim=0)
        best_val = sim.gather(0, best_rows.unsqueeze(0)).squeeze(0)
        better = best_val > col_val                              # strict: earlier chunks win ties
        col_val = torch.where(better, best_val, col_val)
        col_idx = torch.where(better, best_rows + start, col_idx)
    return _index_to_flow(idx01, h, w), _index_to_flow(col_idx, h, w)


def _index_to_flow(target: torch.Tensor, h: int, w: int) -> torch.Tensor:
    src = torch.arange(h * w, device=target.device)
    dx = (target % w - src % w).float()
    dy = (target // w - src // w).float()
    return torch.stack([dx, dy]).reshape(2, h, w)


def estimate_flow_per_pixel(feat0: torch.Tensor, feat1: torch.Tensor) -> torch.Tensor:
    """Reference per-pixel loop for Eq. 5 (0->1 only); used by the benchmark and tests as the slow baseline."""
    c, h, w = feat0.shape
    f0 = F.normalize(feat0.reshape(c, -1).float(), dim=0)
    f1 = F.normalize(feat1.reshape(c, -1).float(), dim=0)
    target = torch.empty(h * w, dtype=torch.long)
    for p in range(h * w):
        target[p] = int(torch.argmax(f0[:, p] @ f1))
    return _index_to_flow(target, h, w)


def estimate_flow_opencv(image0: np.ndarray, image1: np.ndarray, size: tuple[int, int], method: str = "dis"):
    """Classical optical flow (OpenCV DIS or Farneback) on RGB uint8 images, resampled to `size` (h, w).

    Table-3 ablation: replaces the diffusion-feature correspondence. Returns (flow01, flow10) [2,h,w].
    """
    import cv2

    g0, g1 = (cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY) for im in (image0, image1))

    def one(a, b):
        if method == "dis":
            flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
        elif method == "farneback":
            flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 5, 15, 3, 5, 1.2, 0)
        else:
            raise ValueError(f"unknown OpenCV flow method {method!r}: use 'dis' or 'farneback'")
        t = torch.from_numpy(flow).permute(2, 0, 1).unsqueeze(0)
        hh, ww = a.shape
        t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0]
        return t * torch.tensor([size[1] / ww, size[0] / hh]).view(2, 1, 1)

    return one(g0, g1), one(g1, g0)
