"""Softmax splatting (Eq. 4, Niklaus & Liu 2020) and backward warping, in pure torch."""
from __future__ import annotations

import torch
import torch.nn.functional as F

SPLAT_EPS = 1e-7


def _pixel_grid(h: int, w: int, device, dtype) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys])  # [2,H,W], (x, y)


def backwarp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample x at p + flow(p): bilinear grid_sample, zero padding, align_corners=True."""
    b, _, h, w = x.shape
    pos = _pixel_grid(h, w, x.device, flow.dtype) + flow
    gx = 2.0 * pos[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * pos[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def splat_metric(xa: torch.Tensor, xb: torch.Tensor, flow_ab: torch.Tensor, alpha: float = 10.0) -> torch.Tensor:
    """M = clip(-alpha * mean_c |x_a - backwarp(x_b, F_ab)|, -10, 10), the splatting importance (Eq. 4)."""
    err = (xa - backwarp(xb, flow_ab)).abs().mean(dim=1, keepdim=True)
    return (-alpha * err).clamp(-10.0, 10.0)


def _bilinear_targets(flow: torch.Tensor):
    """For every source pixel, its four target pixels' flat indices, bilinear weights and validity."""
    b, _, h, w = flow.shape
    pos = _pixel_grid(h, w, flow.device, flow.dtype) + flow  # [B,2,H,W]
    x, y = pos[:, 0], pos[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    corners = []
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        cx, cy = x0 + dx, y0 + dy
        valid = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= h - 1) & (wt > 0)
        idx = (cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1)).long()
        corners.append((idx.reshape(b, -1), (wt * valid).reshape(b, -1)))
    return corners


def forward_splat(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Summation splatting: every source pixel adds itself bilinearly at p + flow(p)."""
    b, c, h, w = x.shape
    src = x.reshape(b, c, h * w)
    out = torch.zeros_like(src)
    for idx, wt in _bilinear_targets(flow.to(torch.float32) if x.dtype == torch.float16 else flow):
        out.scatter_add_(2, idx.unsqueeze(1).expand(b, c, -1), src * wt.unsqueeze(1).to(x.dtype))
    return out.reshape(b, c, h, w)


def softmax_splat(x: torch.Tensor, flow: torch.Tensor, metric: torch.Tensor) -> torch.Tensor:
    """Eq. 4: sum(exp(M) w x) / (sum(exp(M) w) + 1e-7), the splatting weighted by the importance metric."""
    weight = metric.exp()
    num = forward_splat(torch.cat([x * weight, weight], dim=1), flow)
    return num[:, :-1] / (num[:, -1:] + SPLAT_EPS)


def softmax_splat_with_mask(x: torch.Tensor, flow: torch.Tensor, metric: torch.Tensor):
    """Softmax-splat x with a ones channel appended; returns (splatted x, coverage mask m in [0,1])."""
    out = softmax_splat(torch.cat([x, torch.ones_like(x[:, :1])], dim=1), flow, metric)
    return out[:, :-1], out[:, -1:]


def max_splat(x: torch.Tensor, flow: torch.Tensor, metric: torch.Tensor):
    """Winner-takes-all splatting: each target takes the source with the largest exp(M)·bilinear weight.

    Returns (splatted x, coverage mask in {0,1}); used by the `splat` low-level fusion (supp. A).
    """
    b, c, h, w = x.shape
    imp = metric.exp().reshape(b, -1)
    corners = _bilinear_targets(flow)
    idx = torch.cat([i for i, _ in corners], dim=1)                     # [B, 4HW]
    score = torch.cat([wt * imp for _, wt in corners], dim=1)            # [B, 4HW]
    src_id = torch.arange(h * w, device=x.device).repeat(4).expand(b, -1)
    best = torch.zeros(b, h * w, device=x.device, dtype=score.dtype)
    best.scatter_reduce_(1, idx, score, reduce="amax", include_self=True)
    is_best = (score >= best.gather(1, idx)) & (score > 0)
    # Among equal winners the lowest source index wins, so the result is deterministic.
    cand = torch.where(is_best, -src_id, torch.full_like(src_id, -(h * w)))
    winner = torch.full((b, h * w), -(h * w), device=x.device, dtype=src_id.dtype)
    winner.scatter_reduce_(1, idx, cand, reduce="amax", include_self=True)
    covered = winner > -(h * w)
    gathered = x.reshape(b, c, h * w).gather(2, (-winner).clamp(0, h * w - 1).unsqueeze(1).expand(b, c, -1))
    mask = covered.unsqueeze(1).to(x.dtype)
    return (gathered * mask).reshape(b, c, h, w), mask.reshape(b, 1, h, w)
