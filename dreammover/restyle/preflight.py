"""Before an edit: the fitted size, windows, iterations and a memory estimate from a dry run on the meta device.

The backward pass of the SSM term is what costs memory: the UNet3D's activations saved for autograd, of
a batch of 2 (source and target branch) × `window` frames. They are counted exactly, without computing
anything, by running the model's own config on `meta` tensors with a saved-tensor hook; the
self-similarity matrices (frames × (HW)² per captured layer) are added analytically.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..preflight import GiB, available_memory
from .attention import capture_keys, key_layers, run_to_keys
from .config import RestyleConfig
from .windows import fit_size, plan_windows

# What the no-grad passes and the VAE add on top of the SSM backward (measured: the batch-4 DDS call's
# transient peak is below the saved activations of the batch-2 SSM call; a factor covers allocator slack).
SLACK = 1.25


@dataclass
class RestylePlan:
    """What an edit will cost: fitted size, latent size, windows, iterations, memory."""

    size_hw: tuple[int, int]
    latent_hw: tuple[int, int]
    n_frames: int
    windows: list[tuple[int, int]]
    iterations: int
    weight_bytes: int
    activation_bytes: int
    available_bytes: int | None

    @property
    def peak_bytes(self) -> int:
        return int(self.weight_bytes + SLACK * self.activation_bytes)

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.peak_bytes <= 0.9 * self.available_bytes

    def summary(self) -> str:
        (h, w), (lh, lw) = self.size_hw, self.latent_hw
        mem = f"~{self.peak_bytes / GiB:.1f} GiB peak"
        if self.available_bytes is not None:
            mem += f" of {self.available_bytes / GiB:.1f} GiB available"
        longest = max(b - a for a, b in self.windows)
        if not self.fits:
            mem += " - does not fit: turn on checkpointing, or use a smaller window or max_pixels"
        return (f"restyle {self.n_frames} frames at {w}x{h} (latent {lw}x{lh}), {len(self.windows)} window(s) of "
                f"<= {longest} frames, {self.iterations} iterations, {mem}")


def _weights(*modules) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def ssm_activation_bytes(unet_config, frames: int, h: int, w: int, dtype: torch.dtype,
                         blocks: tuple[int, ...] | None, checkpointing: bool) -> int:
    """Bytes autograd saves in the batch-2 SSM UNet call (meta dry run), plus the self-similarity matrices."""
    from diffusers import UNet3DConditionModel
    from torch.autograd.graph import saved_tensors_hooks

    with torch.device("meta"):
        unet = UNet3DConditionModel.from_config(unet_config).requires_grad_(False)
    size = torch.empty((), dtype=dtype).element_size()  # fp32 on meta; bytes counted at the run's dtype
    per_block: dict[str, int] = {}
    current = ["stem"]
    for name in ("down_blocks", "up_blocks"):
        for i, b in enumerate(getattr(unet, name)):
            b.register_forward_pre_hook(lambda m, a, tag=f"{name}.{i}": current.__setitem__(0, tag))
    unet.mid_block.register_forward_pre_hook(lambda m, a: current.__setitem__(0, "mid"))

    seen = {id(p) for p in unet.parameters()}  # weights are resident already; each saved tensor counts once

    def pack(t):
        if id(t) in seen or (t._base is not None and id(t._base) in seen):
            return t
        seen.add(id(t))
        per_block[current[0]] = per_block.get(current[0], 0) + t.numel() * size
        return t

    layers = key_layers(unet, blocks)
    x = torch.zeros(2, unet_config.in_channels, frames, h, w, device="meta", requires_grad=True)
    emb = torch.zeros(2, 77, unet_config.cross_attention_dim, device="meta")
    with saved_tensors_hooks(pack, lambda t: t), capture_keys(unet, layers) as store:
        run_to_keys(unet, x, torch.zeros(2, dtype=torch.long, device="meta"), encoder_hidden_states=emb)
    # Checkpointed, only one block's activations live at once (block inputs are small beside them).
    saved = max(per_block.values()) if checkpointing else sum(per_block.values())
    # Per layer: SS of both branches, their difference and its gradient, fp32, (frames, HW, HW) each.
    ss = sum(4 * 4 * (k.shape[0] // 2) * k.shape[1] ** 2 for k in store)
    return int(saved + ss)


def restyle_preflight(model, n_frames: int, height: int, width: int,
                      config: RestyleConfig = RestyleConfig()) -> RestylePlan:
    """The plan of an edit of n_frames at height×width on `model`: sizes, windows, iterations, memory estimate."""
    fh, fw = fit_size(height, width, model.size_multiple, config.max_pixels)
    lh, lw = fh // model.vae_factor, fw // model.vae_factor
    windows = plan_windows(n_frames, config.window, config.overlap) if config.windowing else [(0, n_frames)]
    longest = max(b - a for a, b in windows)
    uses_ssm = (config.spatial_ssm and config.lambda_s) or (config.temporal_ssm and config.lambda_t)
    act = ssm_activation_bytes(model.unet.config, longest, lh, lw, model.dtype, config.ssm_blocks,
                               config.checkpointing) if uses_ssm else 0
    return RestylePlan(size_hw=(fh, fw), latent_hw=(lh, lw), n_frames=n_frames, windows=windows,
                       iterations=config.steps * len(windows),
                       weight_bytes=_weights(model.unet, model.vae, model.text_encoder),
                       activation_bytes=act, available_bytes=available_memory(model.device))
