"""Restyle test helpers: a stub UNet with known ε and keys and a model around it; the tiny model fixture and clips."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers.models.attention import AttentionMixin
from diffusers.models.attention_processor import Attention

from dreammover.restyle import load_t2v

C = 4


class StubUNet(torch.nn.Module, AttentionMixin):
    """ε(x, t, e) = s(e)·x with s(e) = e[:, 0, 0]; one decoder attn1 whose keys are the latent tokens (to_k = I)."""

    def __init__(self):
        super().__init__()
        block = torch.nn.Module()
        block.attn1 = Attention(query_dim=C, heads=1, dim_head=C)
        with torch.no_grad():
            block.attn1.to_k.weight.copy_(torch.eye(C))
        attention = torch.nn.Module()
        attention.transformer_blocks = torch.nn.ModuleList([block])
        up = torch.nn.Module()
        up.attentions = torch.nn.ModuleList([attention])
        self.up_blocks = torch.nn.ModuleList([up])
        self.config = SimpleNamespace(down_block_types=("a", "b"), in_channels=C, cross_attention_dim=C)
        self.calls: list[int] = []

    def forward(self, x, t, encoder_hidden_states):
        self.calls.append(x.shape[0])
        b, c, f, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b * f, h * w, c)  # what attn1 sees: (B·F, HW, C)
        self.up_blocks[0].attentions[0].transformer_blocks[0].attn1(tokens)
        s = encoder_hidden_states[:, 0, 0].view(b, 1, 1, 1, 1)
        return SimpleNamespace(sample=s * x)


class StubModel:
    """What `optimise` reads from a T2VModel: unet, embed, ᾱ, device, dtype."""

    def __init__(self, scales: dict[str, float]):
        self.unet = StubUNet()
        self.scales = scales
        self.alphas_cumprod = torch.linspace(0.999, 0.01, 1000)
        self.device, self.dtype, self.window = torch.device("cpu"), torch.float32, 16

    def embed(self, prompt: str) -> torch.Tensor:
        return torch.full((1, 3, C), self.scales[prompt])


@pytest.fixture(scope="module")
def t2v(dreammover_home):
    """The tiny text-to-video model (built once per session's DREAMMOVER_HOME), on the CPU in fp32."""
    return load_t2v("tiny-t2v", device="cpu", dtype=torch.float32, cache_dir=dreammover_home)


def clip(n=4, h=32, w=32, seed=0):
    """n random RGB uint8 frames of h x w, seeded."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
