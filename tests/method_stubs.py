"""Shared stand-ins for the method tests: stub eps models, an in-memory tiny UNet, SD1.5's alpha-bar by hand."""
from __future__ import annotations

import torch

SD15_BETAS = (0.00085, 0.012)  # scaled_linear schedule of SD1.5 over 1000 training steps


def sd15_alpha_bar() -> torch.Tensor:
    """alpha-bar_t of SD1.5 from its betas, computed here (not by diffusers or dreammover.ddim).

    In float32 like the checkpoint's scheduler, so the reference matches to the last bit of the lookup table.
    """
    lo, hi = SD15_BETAS
    betas = torch.linspace(lo ** 0.5, hi ** 0.5, 1000, dtype=torch.float32) ** 2
    return torch.cumprod(1 - betas, dim=0).double()


def sd15_scheduler(set_alpha_to_one: bool = False):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=SD15_BETAS[0], beta_end=SD15_BETAS[1], beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=set_alpha_to_one, steps_offset=1)


class StubEps:
    """eps = a * x + b * t (+ c per sample row), a deterministic noise model that records what it was called with."""

    def __init__(self, a: float = 0.3, b: float = 1e-3, unet=None):
        self.a, self.b = a, b
        self.calls: list[tuple[int, torch.Tensor]] = []
        self.unet = unet if unet is not None else EmptyUNet()
        self.on_call = None

    def expected(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.a * x + self.b * t

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        self.calls.append((int(t), x.detach().clone()))
        if self.on_call is not None:
            self.on_call(x, t)
        return self.expected(x, t)

    @property
    def timesteps(self) -> list[int]:
        return [t for t, _ in self.calls]


class EmptyUNet(torch.nn.Module):
    """Has a UNet's block lists but no transformer blocks, so reference attention has nothing to patch."""

    def __init__(self):
        super().__init__()
        self.down_blocks = torch.nn.ModuleList()
        self.mid_block = torch.nn.Identity()
        self.up_blocks = torch.nn.ModuleList()


def tiny_unet(seed: int = 0):
    """SD1.5's block layout (4 down / 4 up, 16 transformer blocks) at tiny widths, built in memory."""
    from diffusers import UNet2DConditionModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8, block_out_channels=(32, 32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            layers_per_block=2, cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
        )
    return unet.eval().requires_grad_(False)
