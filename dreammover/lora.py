"""LoRA fitted on the input pair (Sec. 3.4, supp. E.1), with peft adapters on the UNet attention projections.

The fit trains peft adapters (fp32 master weights; fp16/bf16 compute under autocast, fp16 with a
scaled loss as the released code's accelerate mixed precision). For inference the adapter is merged
into the UNet's own weights (`lora_merge.py`), so a UNet pass costs what the pretrained one costs.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ADAPTER = "dreammover"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]

LatentSampler = Callable[[torch.Generator], torch.Tensor]


def _lora_config(rank: int):
    from peft import LoraConfig

    # lora_alpha = rank gives scale 1, as the released code's LoRA attention processors.
    return LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGET_MODULES)


def add_lora(unet, rank: int) -> None:
    """Attach a fresh, zero-effect LoRA adapter (B initialised to 0) and make it active."""
    remove_lora(unet)
    unet.add_adapter(_lora_config(rank), adapter_name=ADAPTER)
    unet.set_adapter(ADAPTER)


def remove_lora(unet) -> None:
    """Make the UNet the pretrained one again: restore merged weights bit-exactly, drop our adapter layers."""
    from .lora_merge import restore_base

    restore_base(unet)
    config = getattr(unet, "peft_config", None)
    if config and ADAPTER in config:
        unet.delete_adapters(ADAPTER)
    if not getattr(unet, "peft_config", None) and _has_peft_layers(unet):
        # An adapter-less peft wrapper still costs a Python call per projection (+~20 ms per small UNet call).
        from diffusers.utils import recurse_remove_peft_layers

        recurse_remove_peft_layers(unet)
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if hasattr(unet, attr):
                delattr(unet, attr)


def _has_peft_layers(unet) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


def lora_parameters(unet) -> list[torch.nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    """Our adapter's weights (fp32, CPU), whether it is a peft adapter or merged into the weights."""
    from .lora_merge import merged_state_dict

    merged = merged_state_dict(unet)
    if merged is not None:
        return merged
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous()
            for k, v in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}


def load_lora(unet, state: dict[str, torch.Tensor], rank: int) -> None:
    """Attach our adapter as peft layers with the given weights (for a merged one, see lora_merge.merge_lora)."""
    from peft.utils import set_peft_model_state_dict

    add_lora(unet, rank)
    result = set_peft_model_state_dict(unet, state, adapter_name=ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"LoRA weights do not fit this UNet: {result.unexpected_keys[:3]}")
    unet.requires_grad_(False)


def _mixed_precision(unet, loss_scaling: bool | None):
    """(autocast for the forward, context for the whole fit, GradScaler or None) for the UNet's dtype.

    The adapter's fp32 master weights stay fp32; the UNet computes in its own dtype.
    """
    device, dtype = unet.device, unet.dtype
    if dtype not in (torch.float16, torch.bfloat16):
        return nullcontext(), nullcontext(), None
    from peft.helpers import disable_input_dtype_casting

    # fp16's smallest normal (6e-5) is where the MSE gradient 2(pred - eps)/numel sits at 512 px:
    # scale the loss (dynamic, as accelerate/GradScaler) so deeper gradients do not flush to zero.
    scale = dtype == torch.float16 if loss_scaling is None else loss_scaling
    # Under autocast peft would still copy every activation to the adapter's fp32 first: skip that.
    return (torch.autocast(device.type, dtype=dtype), disable_input_dtype_casting(unet),
            torch.amp.GradScaler(device.type) if scale else None)


def _adamw(params, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW as the released code (weight decay 1e-2); fused where it exists: one kernel, and GradScaler
    hands it the scale and the inf flag on the device instead of reading them on the host each step."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2, fused=device.type in ("cuda", "cpu"))
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)


def fit_lora(unet, latents: torch.Tensor, text_emb: torch.Tensor, alphas_cumprod: torch.Tensor, rank: int = 16,
             lr: float = 5e-4, steps: int = 80, seed: int = 0,
             on_step: Callable[[int, torch.Tensor], None] | None = None,
             sample_latents: LatentSampler | None = None,
             loss_scaling: bool | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Fit one LoRA on both latents: epsilon-prediction MSE at uniformly random timesteps (supp. E.1).

    sample_latents(generator) gives each step's clean latents (the released code: a posterior sample of a
    random view); else `latents` every step. Noise, timesteps and losses stay on the device: the host
    reads the losses once at the end. on_step(step, loss) gets the loss as a 0-d device tensor.
    Leaves the fitted adapter active on `unet` (peft layers) and returns (its weights on CPU, per-step losses).
    """
    device = latents.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # peft's gaussian init draws from the global RNG: make refits reproducible
        add_lora(unet, rank)
    params = lora_parameters(unet)
    for p in params:  # fp32 master weights for the adapter, whatever the UNet's dtype
        p.data = p.data.float()
        p.requires_grad_(True)
    opt = _adamw(params, lr, device)
    autocast, whole_fit, scaler = _mixed_precision(unet, loss_scaling)
    gen = torch.Generator(device=device).manual_seed(seed)
    ac = alphas_cumprod.to(device, torch.float32)
    cond = text_emb.expand(latents.shape[0], -1, -1)
    history = torch.zeros(steps, device=device)
    unet.train()
    try:
        with whole_fit:
            _fit_steps(unet, opt, scaler, autocast, steps, latents, sample_latents, gen, ac, cond, history, on_step)
    finally:
        unet.eval()
        unet.requires_grad_(False)
    return lora_state_dict(unet), history.tolist()


def _fit_steps(unet, opt, scaler, autocast, steps: int, latents, sample_latents, gen, ac, cond, history,
               on_step) -> None:
    """The training loop: nothing in it waits for the device (losses are written into `history`)."""
    device = latents.device
    for step in range(steps):
        x0 = (sample_latents(gen) if sample_latents is not None else latents).float()
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, len(ac), (x0.shape[0],), generator=gen, device=device)
        a = ac[t].view(-1, 1, 1, 1)
        noisy = (a.sqrt() * x0 + (1 - a).sqrt() * noise).to(unet.dtype)
        with autocast:
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        history[step] = loss.detach()
        if on_step is not None:
            on_step(step, history[step])


def save_lora(state: dict[str, torch.Tensor], path: str | Path, rank: int) -> Path:
    from safetensors.torch import save_file

    save_file(state, str(path), metadata={"rank": str(rank), "adapter": ADAPTER})
    return Path(path)


def read_lora(path: str | Path) -> tuple[dict[str, torch.Tensor], int]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        rank = int((f.metadata() or {}).get("rank", 16))
    return load_file(str(path)), rank
