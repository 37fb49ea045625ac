"""Optional ways to cut per-call overhead of inference UNet passes on CUDA (CPU runs are untouched).

A batch-2 SD1.5 UNet call is launch-bound on a fast GPU (33-57 ms eager vs ~12 ms replayed as a CUDA
graph, issue #9), which is what inversion does 62 times per pair. `cuda_graphs` captures one graph per
(input shape, attention-processor layout) and replays it; the weights are read at replay, so an
in-place LoRA re-merge (lora_merge.py) needs no re-capture. `compile` wraps the UNet in torch.compile:
~1.4x per large batch, but 60+ s of compilation per shape, so it pays only for long batch jobs.
Neither could be measured in the session that wrote this (no GPU); both are off by default.
"""
from __future__ import annotations

from typing import Callable

import torch

UnetCall = Callable[..., torch.Tensor]


def _layout(unet) -> tuple[str, ...]:
    """Which attention processor each self-attention layer runs (reference attention or not)."""
    from .attention import self_attention_layers

    return tuple(type(layer.processor).__name__ for layer in self_attention_layers(unet))


class CudaGraphUNet:
    """eps = unet(x, t, cond) replayed from captured CUDA graphs; falls back to eager where it cannot apply."""

    def __init__(self, unet, warmup: int = 2):
        self.unet, self.warmup = unet, warmup
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, dict[str, torch.Tensor], torch.Tensor]] = {}
        self.pool = None

    def _eager(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond).sample

    def __call__(self, x: torch.Tensor, t, cond: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cuda" or torch.is_grad_enabled() or self.unet.training:
            return self._eager(x, t, cond)
        key = (tuple(x.shape), x.dtype, tuple(cond.shape), _layout(self.unet))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, t, cond)
        graph, inputs, out = self.graphs[key]
        inputs["x"].copy_(x)
        inputs["t"].fill_(int(t))
        inputs["cond"].copy_(cond)
        graph.replay()
        return out.clone()

    def _capture(self, x: torch.Tensor, t, cond: torch.Tensor):
        inputs = {"x": x.clone(), "t": torch.full((), int(t), device=x.device, dtype=torch.long),
                  "cond": cond.contiguous().clone()}
        stream = torch.cuda.Stream(x.device)
        stream.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(stream):  # warm-up outside the graph: lazy init, autotuning, allocator
            for _ in range(self.warmup):
                self._eager(inputs["x"], inputs["t"], inputs["cond"])
        torch.cuda.current_stream(x.device).wait_stream(stream)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self._eager(inputs["x"], inputs["t"], inputs["cond"])
        return graph, inputs, out


def unet_runner(unet, device: torch.device, compile: bool = False, cuda_graphs: bool = False) -> UnetCall | None:
    """The callable inference passes should use instead of the plain UNet, or None for plain eager calls."""
    if device.type != "cuda":
        return None  # both options are for CUDA; the CPU path stays exactly as tested
    if cuda_graphs:
        return CudaGraphUNet(unet)
    if compile:
        compiled = torch.compile(unet, dynamic=False)
        return lambda x, t, cond: compiled(x, t, encoder_hidden_states=cond).sample
    return None
