"""LoRA fitted on the input pair (Sec. 3.4, supp. E.1), with peft adapters on the UNet attention projections."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ADAPTER = "dreammover"
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]


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
    """Drop our adapter so the UNet is the pretrained one again."""
    if getattr(unet, "peft_config", None) and ADAPTER in unet.peft_config:
        unet.delete_adapters(ADAPTER)


def lora_parameters(unet) -> list[torch.nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def lora_state_dict(unet) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().float().cpu().contiguous()
            for k, v in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}


def load_lora(unet, state: dict[str, torch.Tensor], rank: int) -> None:
    """Attach our adapter with the given weights (from fit_lora or a safetensors cache)."""
    from peft.utils import set_peft_model_state_dict

    add_lora(unet, rank)
    result = set_peft_model_state_dict(unet, state, adapter_name=ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"LoRA weights do not fit this UNet: {result.unexpected_keys[:3]}")
    unet.requires_grad_(False)


def fit_lora(unet, latents: torch.Tensor, text_emb: torch.Tensor, alphas_cumprod: torch.Tensor, rank: int = 16,
             lr: float = 5e-4, steps: int = 80, seed: int = 0,
             on_step: Callable[[int, float], None] | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Fit one LoRA on both latents: epsilon-prediction MSE at uniformly random timesteps (supp. E.1).

    Leaves the fitted adapter active on `unet` and returns (its weights on CPU, per-step losses).
    """
    devices = [unet.device] if unet.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)  # peft's gaussian init draws from the global RNG: make refits reproducible
        add_lora(unet, rank)
    params = lora_parameters(unet)
    for p in params:  # train the adapter in fp32 even when the UNet runs in fp16
        p.data = p.data.float()
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)  # CPU generator: same draws on every device
    ac = alphas_cumprod.to(latents.device, torch.float32)
    cond = text_emb.expand(latents.shape[0], -1, -1)
    losses = []
    unet.train()
    try:
        for step in range(steps):
            noise = torch.randn(latents.shape, generator=gen).to(latents.device, latents.dtype)
            t = torch.randint(0, len(alphas_cumprod), (latents.shape[0],), generator=gen).to(latents.device)
            a = ac[t].view(-1, 1, 1, 1)
            noisy = (a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()).to(latents.dtype)
            pred = unet(noisy, t, encoder_hidden_states=cond).sample
            loss = F.mse_loss(pred.float(), noise.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach().item())
            if on_step is not None:
                on_step(step, losses[-1])
    finally:
        unet.eval()
        unet.requires_grad_(False)
    return lora_state_dict(unet), losses


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
