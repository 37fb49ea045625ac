"""Steps 7-11 for one chunk of in-between frames: fuse, recombine, first fused step, then plain DDIM."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .attention import reference_attention
from .config import InterpolationConfig
from .ddim import DDIMSchedule, ddim_step, predict_x0
from .fusion import fuse_direct, fuse_high_level, fuse_low_level_wta, fuse_low_level_wta_splat, recombine
from .state import PairState


class EpsModel:
    """eps = UNet(x, t | prompt) with the prompt broadcast over the batch; counts image-evaluations."""

    def __init__(self, unet, text_emb: torch.Tensor, on_batch: Callable[[int], None] | None = None,
                 runner: Callable[..., torch.Tensor] | None = None):
        self.unet, self.text_emb, self.on_batch, self.runner = unet, text_emb, on_batch, runner

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.on_batch is not None:
            self.on_batch(x.shape[0])
        cond = self.text_emb.expand(x.shape[0], -1, -1)
        if self.runner is not None:  # a CUDA-graph or compiled UNet (acceleration.py)
            return self.runner(x, t, cond)
        return self.unet(x, t, encoder_hidden_states=cond).sample


def denoise_chunk(eps: EpsModel, schedule: DDIMSchedule, state: PairState, deltas: Sequence[float],
                  config: InterpolationConfig, progress=None,
                  on_step: Callable[[int, torch.Tensor], None] | None = None,
                  on_x0: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
    """Denoise [endpoint 0, endpoint 1, frames at `deltas`] from z_T to clean latents; returns [2+k,C,h,w].

    Endpoints never attend to in-between frames, so any split of the deltas gives the same frames.
    on_x0 gets each step's clean prediction z_{t->0} (already computed by the step, so previews cost no UNet pass).
    """
    ts = schedule.denoising_timesteps(config.inversion_steps)
    T, dtype = ts[0], state.z_T.dtype
    zT, x0_end = state.z_T, state.z_T_to_0
    f01, f10 = state.flow01.float(), state.flow10.float()
    # Fusion runs in fp32: exp(M) sums can overflow fp16.
    z0f, z1f = zT[0:1].float(), zT[1:2].float()

    def tick(t: int, x: torch.Tensor, x0: torch.Tensor):
        if progress is not None:
            progress.update(1)
        if on_step is not None:  # e.g. the benchmark's high-frequency energy per step (Fig. 5c)
            on_step(t, x)
        if on_x0 is not None:
            on_x0(x0)

    with reference_attention(eps.unet, config.reference_blocks, enabled=config.reference_attention):
        if config.fusion == "direct":
            x = torch.cat([zT, fuse_direct(z0f, z1f, f01, f10, deltas, config.splat_alpha).to(dtype)])
            steps = ts
        else:
            x0_d = fuse_high_level(x0_end[0:1].float(), x0_end[1:2].float(), f01, f10, deltas,
                                   config.splat_alpha)
            if config.wta_mode == "select":
                selected = fuse_low_level_wta(z0f, z1f, f01, f10, deltas).to(dtype)
                eps_d = eps(torch.cat([zT, selected]), T)[2:].float()
            else:
                eps_end = eps(zT, T).float()
                eps_d = fuse_low_level_wta_splat(eps_end[0:1], eps_end[1:2], z0f, z1f, f01, f10, deltas,
                                                 config.splat_alpha)
            z_d = recombine(x0_d, eps_d, schedule.alpha_bar(T)).to(dtype)
            x = torch.cat([zT, z_d])
            x0 = torch.cat([x0_end, x0_d.to(dtype)])
            x = ddim_step(x, eps(x, T), T, schedule, x0=x0)
            tick(T, x, x0)
            steps = ts[1:]
        for t in steps:
            e = eps(x, t)
            x0 = predict_x0(x, e, schedule.alpha_bar(t))  # what ddim_step computes; kept for on_x0
            x = ddim_step(x, e, t, schedule, x0=x0)
            tick(t, x, x0)
    return x


def chunks(deltas: Sequence[float], size: int | str) -> list[list[float]]:
    """Split the deltas into chunks of at most `size` in-between frames.

    "auto" is one chunk: how many frames fit in memory is decided where the chunk runs (`plan_chunks`).
    """
    if size == "auto":
        return [list(deltas)] if len(deltas) else []
    return [list(deltas[i:i + size]) for i in range(0, len(deltas), size)]


# Activation bytes of one image through an SD1.5-style UNet under no_grad, per latent pixel, per
# channel of its first block, per byte of dtype: the skip connections plus the widest transient (the
# feed-forward of a full-resolution transformer block) come to ~19; 32 leaves a margin.
_ACTIVATION_FACTOR = 32
CPU_MAX_FRAMES = 64  # a CPU gains nothing from huger batches and must stay responsive


def free_memory_bytes(device: torch.device) -> int:
    """What a batch may still use: free device memory (plus torch's cached blocks), or a share of free RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(0.8 * (free + cached))
    import os

    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        available = 8 * 2**30
    return int(0.25 * available)


def auto_frames_per_batch(unet, latent_hw: tuple[int, int], device: torch.device, dtype: torch.dtype,
                          budget: int | None = None) -> int:
    """How many in-between frames (besides the two endpoints) one denoising batch can hold."""
    per_image = (_ACTIVATION_FACTOR * unet.config.block_out_channels[0] * latent_hw[0] * latent_hw[1]
                 * torch.finfo(dtype).bits // 8)
    budget = free_memory_bytes(device) if budget is None else budget
    frames = max(1, budget // per_image - 2)
    return frames if device.type == "cuda" else min(frames, CPU_MAX_FRAMES)


def plan_chunks(deltas: Sequence[float], frames_per_batch: int | str, unet, latent_hw: tuple[int, int],
                device: torch.device, dtype: torch.dtype) -> list[list[float]]:
    """Chunks of the deltas for one device; "auto" takes as many as fit, in chunks of equal size.

    Each chunk re-denoises both endpoints (2 x 31 image-evals at defaults), so fewer chunks are cheaper.
    """
    if frames_per_batch != "auto":
        return chunks(deltas, frames_per_batch)
    limit = auto_frames_per_batch(unet, latent_hw, device, dtype)
    count = -(-len(deltas) // limit) if len(deltas) else 0
    return chunks(deltas, -(-len(deltas) // count)) if count else []


def join_chunks(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Chunks' latents [2+k_i,C,h,w] -> [2+sum k_i,C,h,w]: every chunk carries both endpoints (identical by
    construction, `denoise_chunk`), so they are kept once, from the first chunk."""
    return torch.cat([parts[0][:2], *[p[2:] for p in parts]])


def clip_order(frames: list, inputs: Sequence | None = None) -> list:
    """[end0, end1, frames...] (as denoised) -> the clip end0, frames..., end1; `inputs` replace the two
    decoded endpoints by the prepared photos (keep_inputs)."""
    end0, end1 = (inputs[0], inputs[1]) if inputs is not None else (frames[0], frames[1])
    return [end0, *frames[2:], end1]
