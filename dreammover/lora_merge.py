"""The pair's LoRA merged into the UNet's weights, W = W0 + s * B A, at the scale each stage uses.

The released code runs the LoRA at scale 1.0 for inversion and features and 0.8 while denoising
(DESIGN §3 step 1). Merged, a UNet pass costs what the pretrained one costs and the weights keep the
UNet's dtype. W0 is kept (a copy of the targeted projections, ~190 MB in fp16 for SD1.5) so every
re-merge starts from it and `restore_base` gives the pretrained weights back bit-exactly; the
merge writes in place, so captured CUDA graphs and compiled modules keep pointing at valid weights.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

_ATTR = "_dreammover_merged_lora"
_A, _B = ".lora_A.weight", ".lora_B.weight"


@dataclass
class MergedLora:
    """What is merged where: the pretrained weights, the fp32 factors (alpha = rank: no extra factor), the scale."""

    weights: dict[str, torch.nn.Parameter]
    base: dict[str, torch.Tensor]
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    rank: int
    scale: float


def merged(unet) -> MergedLora | None:
    return unet.__dict__.get(_ATTR)


@torch.no_grad()
def _write(record: MergedLora, scale: float) -> None:
    for name, w in record.weights.items():
        if scale == 0:
            w.copy_(record.base[name])
            continue
        a, b = record.factors[name]
        # fp32 sum, one rounding to the UNet's dtype: the same W for the same (W0, A, B, s) every time.
        w.copy_(torch.addmm(record.base[name].float(), b, a, alpha=scale).to(w.dtype))
    record.scale = scale


def merge_lora(unet, state: dict[str, torch.Tensor], rank: int, scale: float = 1.0) -> MergedLora:
    """Merge LoRA weights (from fit_lora or a cache) into the UNet at `scale`; any previous LoRA is undone first."""
    from .lora import remove_lora

    remove_lora(unet)
    modules = dict(unet.named_modules())
    names = sorted(k[:-len(_A)] for k in state if k.endswith(_A))
    bad = [n for n in names if n not in modules or n + _B not in state] + [k for k in state if
                                                                          not k.endswith((_A, _B))]
    if bad or not names:
        raise ValueError(f"LoRA weights do not fit this UNet: {(bad or ['no lora_A weights'])[:3]}")
    weights = {n: modules[n].weight for n in names}
    device = next(iter(weights.values())).device
    factors = {}
    for n in names:
        a, b = state[n + _A].to(device, torch.float32), state[n + _B].to(device, torch.float32)
        if a.shape[0] != rank or b.shape[1] != rank or (b.shape[0], a.shape[1]) != tuple(weights[n].shape):
            raise ValueError(f"LoRA weights do not fit this UNet: {n} has rank {a.shape[0]}, shape "
                             f"{tuple(b.shape[:1]) + tuple(a.shape[1:])} vs {tuple(weights[n].shape)}")
        factors[n] = (a, b)
    record = MergedLora(weights, {n: w.detach().clone() for n, w in weights.items()}, factors, rank, 0.0)
    unet.__dict__[_ATTR] = record
    _write(record, scale)
    return record


@torch.no_grad()
def restore_base(unet) -> None:
    """Put the pretrained weights back exactly (a no-op when nothing is merged)."""
    record = unet.__dict__.pop(_ATTR, None)
    if record is not None:
        for name, w in record.weights.items():
            w.copy_(record.base[name])


def merged_state_dict(unet) -> dict[str, torch.Tensor] | None:
    """The merged LoRA's factors in peft's key layout (fp32, CPU), or None when none is merged."""
    record = merged(unet)
    if record is None:
        return None
    out = {}
    for n, (a, b) in record.factors.items():
        out[n + _A], out[n + _B] = a.cpu().contiguous(), b.cpu().contiguous()
    return out


def set_lora_scale(unet, scale: float) -> float | None:
    """Set the active LoRA's scale (merged or peft layers); returns the previous one, None without a LoRA."""
    record = merged(unet)
    if record is not None:
        previous = record.scale
        if scale != previous:
            _write(record, scale)
        return previous
    from .lora import ADAPTER

    previous = None
    for module in unet.modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and ADAPTER in scaling and hasattr(module, "set_scale"):
            # alpha = rank, so peft's scaling equals our scale
            previous = scaling[ADAPTER] if previous is None else previous
            module.set_scale(ADAPTER, scale)
    return previous


@contextmanager
def lora_scale(unet, scale: float) -> Iterator[None]:
    """Run a stage with the LoRA at `scale` (e.g. 0.8 while denoising) and put the previous scale back."""
    previous = set_lora_scale(unet, scale)
    try:
        yield
    finally:
        if previous is not None:
            set_lora_scale(unet, previous)
