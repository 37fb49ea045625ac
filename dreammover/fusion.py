"""Two-level latent fusion: high-level (Eq. 7), low-level winner-takes-all (Sec. 3.3), recombination (Eq. 8)."""
from __future__ import annotations

from typing import Sequence

import torch

from .splatting import backwarp, max_splat, softmax_splat_with_mask, splat_metric


def _deltas(deltas: Sequence[float], like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(list(deltas), dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def _with_ones(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones_like(x[:, :1])], dim=1)


def fuse_high_level(z0: torch.Tensor, z1: torch.Tensor, flow01: torch.Tensor, flow10: torch.Tensor,
                    deltas: Sequence[float], alpha: float = 10.0) -> torch.Tensor:
    """Eq. 7: splat both clean latents to each delta; blend where both land, take the one that lands, else unwarped blend.

    z0, z1: [1,C,H,W]; flows: [2,H,W]. Returns [len(deltas),C,H,W].
    """
    k = len(deltas)
    d = _deltas(deltas, z0)
    a0, a1 = _with_ones(z0), _with_ones(z1)
    # The released code measures the splatting error with the ones channel appended (mean over C+1).
    m0 = splat_metric(a0, a1, flow01[None], alpha).expand(k, -1, -1, -1)
    m1 = splat_metric(a1, a0, flow10[None], alpha).expand(k, -1, -1, -1)
    s0, c0 = softmax_splat_with_mask(z0.expand(k, -1, -1, -1), d * flow01[None], m0)
    s1, c1 = softmax_splat_with_mask(z1.expand(k, -1, -1, -1), (1 - d) * flow10[None], m1)
    both = c0 * c1
    unwarped = (1 - d) * z0 + d * z1
    return (((1 - d) * s0 + d * s1) * both
            + s1 * (c1 - both).clamp(min=0)
            + s0 * (c0 - both).clamp(min=0)
            + unwarped * (1 - (c0 + c1).clamp(max=1)))


def fuse_low_level_wta(zT0: torch.Tensor, zT1: torch.Tensor, flow01: torch.Tensor, flow10: torch.Tensor,
                       deltas: Sequence[float]) -> torch.Tensor:
    """Sec. 3.3 `select` (released code): per pixel pick z_T^0 or z_T^1 by the larger confidence, never average.

    c0 = clip(0.3 - E0, 0.001, 1)(1-delta), c1 = clip(0.3 - E1, 0.001, 1) delta; ties pick image 0.
    Returns the selected noisy latents [len(deltas),C,H,W] whose UNet noise becomes eps^delta.
    """
    d = _deltas(deltas, zT0)
    e0 = (zT0 - backwarp(zT1, flow01[None])).abs().mean(dim=1, keepdim=True)
    e1 = (zT1 - backwarp(zT0, flow10[None])).abs().mean(dim=1, keepdim=True)
    c0 = (0.3 - e0).clamp(0.001, 1.0) * (1 - d)
    c1 = (0.3 - e1).clamp(0.001, 1.0) * d
    return torch.where(c0 >= c1, zT0, zT1)


def fuse_low_level_wta_splat(eps0: torch.Tensor, eps1: torch.Tensor, zT0: torch.Tensor, zT1: torch.Tensor,
                             flow01: torch.Tensor, flow10: torch.Tensor, deltas: Sequence[float],
                             alpha: float = 10.0) -> torch.Tensor:
    """Sec. 3.3 `splat` (paper wording): max-splat each side's noise to delta; where both land the larger time weight wins.

    Where neither lands, the unwarped noise of the side with the larger time weight is kept.
    """
    k = len(deltas)
    d = _deltas(deltas, eps0)
    m0 = splat_metric(zT0, zT1, flow01[None], alpha).expand(k, -1, -1, -1)
    m1 = splat_metric(zT1, zT0, flow10[None], alpha).expand(k, -1, -1, -1)
    s0, c0 = max_splat(eps0.expand(k, -1, -1, -1), d * flow01[None], m0)
    s1, c1 = max_splat(eps1.expand(k, -1, -1, -1), (1 - d) * flow10[None], m1)
    prefer0 = (1 - d) >= d
    pick0 = (c0 > 0) & ((c1 == 0) | prefer0)
    pick1 = (c1 > 0) & ~pick0
    fallback = torch.where(prefer0, eps0.expand(k, -1, -1, -1), eps1.expand(k, -1, -1, -1))
    return torch.where(pick0, s0, torch.where(pick1, s1, fallback))


def recombine(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_T: float) -> torch.Tensor:
    """Eq. 8: z_T^delta = sqrt(abar_T) z^delta_{T->0} + sqrt(1 - abar_T) eps^delta."""
    return alpha_bar_T ** 0.5 * x0 + (1 - alpha_bar_T) ** 0.5 * eps


def fuse_direct(zT0: torch.Tensor, zT1: torch.Tensor, flow01: torch.Tensor, flow10: torch.Tensor,
                deltas: Sequence[float], alpha: float = 10.0) -> torch.Tensor:
    """Table-3 ablation: one softmax-splat fusion of the noisy latents z_T (no two-level split)."""
    return fuse_high_level(zT0, zT1, flow01, flow10, deltas, alpha)
