"""`restyle()`: one DreamMotion edit of a whole clip, in overlapping windows that share one latent z."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .attention import key_layers
from .config import RestyleConfig
from .errors import check_restyle_inputs, frame_shape
from .masks import latent_mask
from .method import (decode_clip, encode_clip, forward_noise, guided_eps, masked_dds_gradient, sgd_update,
                     ssm_gradient, to_tensor, to_uint8, unet_autocast)
from .windows import fit_size, plan_windows, resize_frames


@dataclass
class RestyleResult:
    """The edited frames (input size and count), seconds per stage, per-iteration losses and peak memory."""

    frames: list[np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    losses: list[dict] = field(default_factory=list)
    peak_bytes: int = 0


@contextmanager
def frozen(*modules):
    """Parameters do not require grad inside (only z is optimised); their flags are restored after."""
    flags = [(p, p.requires_grad) for m in modules for p in m.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def checkpointed(unet, enabled: bool):
    """Gradient checkpointing of each UNet3D down/mid/up block (its 3-D blocks have none of their own)."""
    from torch.utils.checkpoint import checkpoint

    if not enabled:
        yield
        return
    blocks = [*unet.down_blocks, unet.mid_block, *unet.up_blocks]
    for b in blocks:
        b.forward = (lambda f: lambda *a, **k: checkpoint(f, *a, use_reentrant=False, **k))(b.forward)
    try:
        yield
    finally:
        for b in blocks:
            del b.forward  # the instance attribute shadowed the class's forward


def _peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def restyle(model, frames, source_prompt: str, target_prompt: str, mask: np.ndarray | None = None,
            config: RestyleConfig = RestyleConfig(),
            progress: Callable[[int, int], None] | None = None) -> RestyleResult:
    """Edit `frames` from `source_prompt` to `target_prompt` (DreamMotion: masked V-DDS + S-SSM + T-SSM on z)."""
    t0 = time.perf_counter()
    check_restyle_inputs(frames, source_prompt, target_prompt, mask, config)
    n, height, width = frame_shape(frames)
    frames = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames]
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fh, fw = fit_size(height, width, model.size_multiple, config.max_pixels)
    unet, vae = model.unet, model.vae
    with frozen(unet, vae, model.text_encoder), checkpointed(unet, config.checkpointing):
        z_src = encode_clip(vae, to_tensor(resize_frames(frames, fh, fw), device), model.vae_scale)
        t1 = time.perf_counter()
        h, w = z_src.shape[-2:]
        m = latent_mask(mask, n, h, w).to(device) if mask is not None and config.use_mask else None
        z, losses = optimise(model, z_src, source_prompt, target_prompt, m, config, progress)
        t2 = time.perf_counter()
        out = to_uint8(decode_clip(vae, z, model.vae_scale))
    out = resize_frames(out, height, width)
    t3 = time.perf_counter()
    return RestyleResult(frames=out, losses=losses, peak_bytes=_peak_bytes(device),
                         seconds=dict(encode=t1 - t0, optimise=t2 - t1, decode=t3 - t2, total=t3 - t0))


def optimise(model, z_src: torch.Tensor, source_prompt: str, target_prompt: str, mask: torch.Tensor | None,
             config: RestyleConfig, progress=None, start: torch.Tensor | None = None) -> tuple[torch.Tensor, list[dict]]:
    """`steps` SGD iterations on z (from `start`, default ẑ); each averages the windows' gradients where they overlap."""
    n = z_src.shape[2]
    windows = plan_windows(n, config.window, config.overlap) if config.windowing else [(0, n)]
    cover = torch.zeros(n, device=z_src.device)
    for a, b in windows:
        cover[a:b] += 1
    cover = cover.view(1, 1, n, 1, 1)
    emb_u, emb_s, emb_t = model.embed(""), model.embed(source_prompt), model.embed(target_prompt)
    lam_s = config.lambda_s if config.spatial_ssm else 0.0
    lam_t = config.lambda_t if config.temporal_ssm else 0.0
    layers = key_layers(model.unet, config.ssm_blocks) if (lam_s or lam_t) else []
    autocast = lambda: unet_autocast(model.device, model.dtype, config.autocast)  # noqa: E731
    gen = torch.Generator().manual_seed(config.seed)  # CPU generator: the same t and ε on every device
    alphas = model.alphas_cumprod.to(z_src.device)
    z, losses, done, total = (z_src if start is None else start).clone(), [], 0, config.steps * len(windows)
    for _ in range(config.steps):
        t = int(torch.randint(config.t_min, config.t_max, (1,), generator=gen))
        eps = torch.randn(z.shape, generator=gen).to(z.device)  # one ε for the clip: overlaps see the same noise
        grad = torch.zeros_like(z)
        record = dict(t=t, dds=0.0, ssm_s=0.0, ssm_t=0.0)
        for a, b in windows:
            zw, zsw, ew = z[:, :, a:b], z_src[:, :, a:b], eps[:, :, a:b]
            z_t, z_src_t = forward_noise(zw, zsw, t, ew, alphas)
            with autocast():
                e_src, e_tgt = guided_eps(model.unet, z_src_t, z_t, t, emb_u, emb_s, emb_t, config.guidance_scale)
            g = masked_dds_gradient(e_tgt, e_src, None if mask is None else mask[a:b], config.dds_scale)
            record["dds"] += float(g.norm()) / len(windows)
            if layers:
                g_ssm, l_s, l_t = ssm_gradient(model.unet, zw, z_src_t, t, ew, alphas, emb_s, emb_t, layers,
                                               lam_s, lam_t, autocast)
                g = g + g_ssm
                record["ssm_s"] += l_s / len(windows)
                record["ssm_t"] += l_t / len(windows)
            grad[:, :, a:b] += g
            done += 1
            if progress is not None:
                progress(done, total)
        z = sgd_update(z, grad / cover, config.lr)
        losses.append(record)
    return z, losses
