"""Diffusion features for correspondence (Sec. 3.2), captured with a forward hook on one up-block."""
from __future__ import annotations

from typing import Callable

import torch


def extract_features(run_unet: Callable[[], object], unet, block_index: int = 1) -> torch.Tensor:
    """Run the UNet once and return the output of `unet.up_blocks[block_index]` ([B,C,h,w])."""
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = unet.up_blocks[block_index].register_forward_hook(hook)
    try:
        run_unet()
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"up_blocks[{block_index}] did not run during the UNet pass")
    return captured[-1].detach()
