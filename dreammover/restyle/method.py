"""DreamMotion's steps (spec ../shared/papers/dreammotion.md, Algorithm), each a function named after the paper.

Latents are (1, C, F, h, w) as the UNet3D takes them; keys are (B·F, HW, C) as attn1 sees them.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
import torch.nn.functional as F

from .attention import capture_keys, run_to_keys

VAE_BATCH = 4  # frames per VAE call: the VAE is applied frame by frame, a few at a time bounds its memory


def unet_autocast(device: torch.device, dtype: torch.dtype, enabled: bool = True):
    """Autocast of the UNet on CUDA only (fp16 unless the model is bf16); a no-op elsewhere."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if dtype == torch.bfloat16 else torch.float16)


@torch.no_grad()
def encode_clip(vae, frames: torch.Tensor, scale: float) -> torch.Tensor:
    """ẑ = scale · E(x) (posterior mean), frame by frame: (F, 3, H, W) in [-1, 1] -> (1, C, F, h, w) fp32."""
    dtype = next(vae.parameters()).dtype
    parts = [vae.encode(frames[i:i + VAE_BATCH].to(dtype)).latent_dist.mean.float()
             for i in range(0, len(frames), VAE_BATCH)]
    return (torch.cat(parts) * scale).permute(1, 0, 2, 3)[None]


@torch.no_grad()
def decode_clip(vae, z: torch.Tensor, scale: float) -> torch.Tensor:
    """x = D(z / scale), frame by frame: (1, C, F, h, w) -> (F, 3, H, W) in [-1, 1] fp32."""
    dtype = next(vae.parameters()).dtype
    frames = z[0].permute(1, 0, 2, 3) / scale
    return torch.cat([vae.decode(frames[i:i + VAE_BATCH].to(dtype)).sample.float()
                      for i in range(0, len(frames), VAE_BATCH)]).clamp(-1, 1)


def forward_noise(z: torch.Tensor, z_src: torch.Tensor, t: int, eps: torch.Tensor,
                  alphas_cumprod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z_t = √ᾱ_t z + √(1−ᾱ_t) ε and ẑ_t = √ᾱ_t ẑ + √(1−ᾱ_t) ε with one shared ε (Alg. step b)."""
    a = alphas_cumprod[t].to(z.device, torch.float32)
    return a.sqrt() * z + (1 - a).sqrt() * eps, a.sqrt() * z_src + (1 - a).sqrt() * eps


@torch.no_grad()
def guided_eps(unet, z_src_t: torch.Tensor, z_t: torch.Tensor, t: int, emb_uncond: torch.Tensor,
               emb_src: torch.Tensor, emb_tgt: torch.Tensor, w: float) -> tuple[torch.Tensor, torch.Tensor]:
    """ε^w = ε_∅ + w(ε_c − ε_∅) of (ẑ_t, ŷ) and (z_t, y) from ONE batched UNet call {ẑ_t, z_t} × {∅, c} (step c)."""
    dtype = next(unet.parameters()).dtype
    x = torch.cat([z_src_t, z_t, z_src_t, z_t]).to(dtype)
    emb = torch.cat([emb_uncond, emb_uncond, emb_src, emb_tgt]).to(dtype)
    tt = torch.full((4,), int(t), device=x.device, dtype=torch.long)
    e = unet(x, tt, encoder_hidden_states=emb).sample.float()
    e_u_src, e_u_tgt, e_c_src, e_c_tgt = e.chunk(4)
    return e_u_src + w * (e_c_src - e_u_src), e_u_tgt + w * (e_c_tgt - e_u_tgt)


def masked_dds_gradient(eps_tgt: torch.Tensor, eps_src: torch.Tensor, mask: torch.Tensor | None,
                        scale: float) -> torch.Tensor:
    """∇_z L_DDS = scale/(h·w) · (ε^w(z_t, y) − ε^w(ẑ_t, ŷ)) ⊙ m; no backprop through the UNet (step d).

    `mask` is (F, h, w) on the latent grid (None: the whole frame)."""
    g = eps_tgt - eps_src
    if mask is not None:
        g = g * mask.to(g)[None, None]
    return g * (scale / (g.shape[-1] * g.shape[-2]))


def self_similarity(x: torch.Tensor) -> torch.Tensor:
    """Cosine self-similarity S_ij = x_i·x_j / (|x_i||x_j|) of the rows of x (..., n, C) -> (..., n, n)."""
    x = F.normalize(x.float(), dim=-1, eps=1e-12)
    return x @ x.transpose(-1, -2)


def spatial_ssm_loss(keys: list[torch.Tensor], keys_src: list[torch.Tensor]) -> torch.Tensor:
    """L_S = mean over layers, frames and entries of (SS(K) − SS(K̂))², SS over each frame's HW keys (step e)."""
    return torch.stack([(self_similarity(k) - self_similarity(ks)).pow(2).mean()
                        for k, ks in zip(keys, keys_src)]).mean()


def temporal_similarity(k: torch.Tensor) -> torch.Tensor:
    """TS = N×N cosine similarity of the frames' spatially averaged keys: (F, HW, C) -> (F, F)."""
    return self_similarity(k.float().mean(dim=1))


def temporal_ssm_loss(keys: list[torch.Tensor], keys_src: list[torch.Tensor]) -> torch.Tensor:
    """L_T = mean over layers and entries of (TS(K) − TS(K̂))² (step f; mean over entries: our choice)."""
    return torch.stack([(temporal_similarity(k) - temporal_similarity(ks)).pow(2).mean()
                        for k, ks in zip(keys, keys_src)]).mean()


def ssm_gradient(unet, z: torch.Tensor, z_src_t: torch.Tensor, t: int, eps: torch.Tensor,
                 alphas_cumprod: torch.Tensor, emb_src: torch.Tensor, emb_tgt: torch.Tensor, layers: list[str],
                 lambda_s: float, lambda_t: float, autocast=nullcontext) -> tuple[torch.Tensor, float, float]:
    """∇_z(λ_s L_S + λ_t L_T): keys of (ẑ_t, ŷ) (constants) and (z_t, y) from one batched call; backprop to z only."""
    z = z.detach().requires_grad_(True)
    z_t, _ = forward_noise(z, z_src_t, t, eps, alphas_cumprod)  # differentiable in z; ẑ_t is given
    dtype = next(unet.parameters()).dtype
    x = torch.cat([z_src_t, z_t]).to(dtype)
    emb = torch.cat([emb_src, emb_tgt]).to(dtype)
    tt = torch.full((2,), int(t), device=x.device, dtype=torch.long)
    # Backward inside the capture: checkpointed blocks recompute their forward with the same processors.
    with capture_keys(unet, layers) as store:
        with autocast():
            run_to_keys(unet, x, tt, encoder_hidden_states=emb)
        keys_src = [k.chunk(2)[0].detach() for k in store]
        keys = [k.chunk(2)[1] for k in store]
        l_s = spatial_ssm_loss(keys, keys_src) if lambda_s else z.new_zeros(())
        l_t = temporal_ssm_loss(keys, keys_src) if lambda_t else z.new_zeros(())
        total = lambda_s * l_s + lambda_t * l_t
        grad = torch.autograd.grad(total, z)[0] if total.requires_grad else torch.zeros_like(z)
    return grad.float(), float(l_s.detach()), float(l_t.detach())


def sgd_update(z: torch.Tensor, grad: torch.Tensor, lr: float) -> torch.Tensor:
    """z ← z − lr · (∇L_DDS + ∇(λ_s L_S + λ_t L_T)) (step g; plain SGD)."""
    return z - lr * grad


def to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 (H, W, 3) frames -> (F, 3, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    """(F, 3, H, W) in [-1, 1] -> uint8 (H, W, 3) frames."""
    x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(x)
