"""Dual-directional diffusion sampling (Alg. 2, Sec. 4.3), one named function per line of the algorithm."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .temporal_attention import Mode, TemporalAttentionControl

FRAME_DIM = 1  # latents are [B, N, C, h, w], as SVD's UNet takes them


@dataclass
class KeyframeCondition:
    """c_0 and c_{N-1} (Alg. 2 l.1): CLIP image embeddings, noise-augmented VAE latents, added time ids.

    Per pair and reusable across clips of any length: cache it with `to_tensors` / `from_tensors`.
    """

    embeddings: torch.Tensor  # [2, 1, D]: keyframe 0, keyframe 1
    latents: torch.Tensor     # [2, C, h, w]: VAE mode of each keyframe (unscaled, as SVD concatenates them)
    time_ids: torch.Tensor    # [1, 3]: fps - 1, motion bucket id, noise augmentation strength

    def to_tensors(self) -> dict[str, torch.Tensor]:
        return {"embeddings": self.embeddings, "latents": self.latents, "time_ids": self.time_ids}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "KeyframeCondition":
        return cls(t["embeddings"], t["latents"], t["time_ids"])

    def to(self, device, dtype) -> "KeyframeCondition":
        return KeyframeCondition(*(x.to(device, dtype) for x in (self.embeddings, self.latents, self.time_ids)))


class PathModel:
    """f(z_t; t, c_k) of one sampling path: SVD's conditioning and image CFG around the UNet.

    side 0 is the forward path (keyframe I_0, records the temporal attention maps); side 1 the backward
    path (keyframe I_{N-1}, rotated maps). `unet` may be any callable with the diffusers SVD UNet signature.
    """

    def __init__(self, unet, cond: KeyframeCondition, guidance_scale: float = 1.0,
                 control: TemporalAttentionControl | None = None, count: Callable[[int], None] | None = None):
        self.unet, self.cond, self.guidance = unet, cond, guidance_scale
        self.control, self.count = control, count

    def __call__(self, z: torch.Tensor, t: torch.Tensor, sigma: torch.Tensor, side: int) -> torch.Tensor:
        b, n = z.shape[:2]
        x = z / (sigma ** 2 + 1) ** 0.5  # EDM input scaling c_in (scheduler.scale_model_input)
        lat = self.cond.latents[side][None, None].expand(b, n, -1, -1, -1)
        emb = self.cond.embeddings[side:side + 1].expand(b, -1, -1)
        cfg = self.guidance > 1.0
        if cfg:  # unconditional half: zero image embedding and zero conditioning latents, as SVD was trained
            x = torch.cat([x, x])
            lat, emb = torch.cat([torch.zeros_like(lat), lat]), torch.cat([torch.zeros_like(emb), emb])
        mode: Mode = "forward" if side == 0 else "backward"
        if self.control is not None:
            self.control.set_mode(mode)
        try:
            v = self.unet(torch.cat([x, lat.to(x.dtype)], dim=2), t, encoder_hidden_states=emb,
                          added_time_ids=self.cond.time_ids.expand(x.shape[0], -1), return_dict=False)[0]
        finally:
            if self.control is not None and side == 1:
                self.control.set_mode("plain")
        if self.count is not None:
            self.count(x.shape[0] * n)
        if cfg:
            uncond, cond = v.chunk(2)
            v = uncond + self.guidance * (cond - uncond)
        return v


def flip_time(x: torch.Tensor) -> torch.Tensor:
    """flip(·) of Alg. 1-2: reverse a latent video along its frame axis."""
    return x.flip(FRAME_DIM)


def forward_motion_prediction(model: PathModel, z_t, t, sigma) -> torch.Tensor:
    """Alg. 2 l.5-6: v̂_{t,0} = f_θ(z_t; t, c_0), extracting the temporal attention maps {A_i} on the way."""
    return model(z_t, t, sigma, side=0)


def backward_motion_prediction(model: PathModel, z_t, t, sigma) -> torch.Tensor:
    """Alg. 2 l.7-9: z'_t = flip(z_t); v̂_{t,1} = f_θ'(z'_t; t, c_{N-1}, {A'_i}); returns flip(v̂_{t,1})."""
    return flip_time(model(flip_time(z_t), t, sigma, side=1))


def fusion_weights(frames: int, mode: str, device=None, dtype=torch.float32) -> torch.Tensor:
    """Weight of the forward path per frame: ½ everywhere (the paper), or 1 -> 0 (released `weighted_average`)."""
    if mode == "mean":
        w = torch.full((frames,), 0.5)
    elif mode == "linear":
        w = torch.linspace(1.0, 0.0, frames)
    else:
        raise ValueError(f"unknown fusion {mode!r}: use 'mean' or 'linear'")
    return w.to(device, dtype).view(1, frames, 1, 1, 1)


def fuse(v_forward: torch.Tensor, v_backward_flipped: torch.Tensor, w: torch.Tensor | float = 0.5) -> torch.Tensor:
    """Alg. 2 l.10: v̂_t = fuse(v̂_{t,0}, v̂'_{t,1}) = w v̂_{t,0} + (1 - w) v̂'_{t,1}."""
    return w * v_forward + (1 - w) * v_backward_flipped


def denoised(z: torch.Tensor, v: torch.Tensor, sigma, prediction_type: str = "v_prediction") -> torch.Tensor:
    """SVD's EDM denoiser D = c_skip z + c_out v̂ (c_skip = 1/(σ²+1), c_out = -σ/√(σ²+1))."""
    if prediction_type == "v_prediction":
        return z / (sigma ** 2 + 1) + v * (-sigma / (sigma ** 2 + 1) ** 0.5)
    if prediction_type == "epsilon":
        return z - sigma * v
    raise ValueError(f"unsupported prediction type {prediction_type!r}")


def euler_update(z: torch.Tensor, v: torch.Tensor, sigma, sigma_next, prediction_type: str = "v_prediction"):
    """Alg. 2 l.11: z_{t-1} = update(z_t, v̂_t; t), one Euler step of SVD's EDM sampler from σ_t to σ_{t-1}."""
    zf = z.float()
    d = (zf - denoised(zf, v.float(), sigma, prediction_type)) / sigma
    return (zf + d * (sigma_next - sigma)).to(z.dtype)


def reinject_noise(z: torch.Tensor, sigma, sigma_next, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sec. 4.3 per-step recurrence: z ← z_{t-1} + √(σ_t² - σ_{t-1}²) ε, back to the noise level of step t."""
    eps = torch.randn(z.shape, generator=generator, device=generator.device if generator else "cpu").to(z)
    return z + (sigma ** 2 - sigma_next ** 2) ** 0.5 * eps


def dual_directional_step(model: PathModel, z_t, t, sigma, sigma_next, w, prediction_type="v_prediction"):
    """Alg. 2 l.5-11: both paths at step t, fused, and one update to z_{t-1}."""
    v0 = forward_motion_prediction(model, z_t, t, sigma)
    v1 = backward_motion_prediction(model, z_t, t, sigma)
    return euler_update(z_t, fuse(v0, v1, w), sigma, sigma_next, prediction_type)


def dual_directional_sampling(model: PathModel, z_T: torch.Tensor, timesteps: torch.Tensor, sigmas: torch.Tensor,
                              w, injection_steps: int = 0, injection_ratio: float = 0.0,
                              generator: torch.Generator | None = None, prediction_type: str = "v_prediction",
                              on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """Alg. 2 l.3-12 from z_T: every step fused, the first `injection_ratio` of them repeated with re-noising."""
    z = z_T
    recurrent = int(len(timesteps) * injection_ratio)
    for i, t in enumerate(timesteps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        z = dual_directional_step(model, z, t, sigma, sigma_next, w, prediction_type)
        for _ in range(injection_steps if i < recurrent else 0):
            z = reinject_noise(z, sigma, sigma_next, generator)
            z = dual_directional_step(model, z, t, sigma, sigma_next, w, prediction_type)
        if on_step is not None:
            on_step(i)
    return z
