"""Capture the decoder's spatial self-attention keys K (S-SSM / T-SSM input) with an attention processor.

The processor is set on the chosen `up_blocks.*.attentions.*.transformer_blocks.*.attn1` layers only (the
spatial transformers; `temp_attentions` attend across frames and are left alone); the UNet's own forward runs.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


class KeysCaptured(Exception):
    """Raised after the last needed layer: the rest of the decoder does not change the keys (saves its compute)."""


class KeyCaptureProcessor:
    """Wraps a layer's processor: records K = to_k(hidden_states) (batch·frames, HW, C), then attends as before."""

    def __init__(self, inner, store: list, stop: bool = False):
        self.inner, self.store, self.stop = inner, store, stop

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        # attn1 has no group/spatial norm and no encoder states: to_k(hidden_states) is exactly its key.
        self.store.append(attn.to_k(hidden_states))
        if self.stop:
            raise KeysCaptured
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


def key_layers(unet, blocks: tuple[int, ...] | None = None) -> list[str]:
    """Processor names of the spatial attn1 layers in the decoder blocks `blocks` (None: every decoder block)."""
    names = []
    for name in unet.attn_processors:
        parts = name.split(".")
        if parts[0] == "up_blocks" and parts[2] == "attentions" and parts[-2] == "attn1":
            if blocks is None or int(parts[1]) in blocks:
                names.append(name)
    if not names:
        raise ValueError(f"no spatial self-attention in decoder blocks {blocks}: pick up_blocks with attentions")
    return names


@contextmanager
def capture_keys(unet, layers: list[str], stop_early: bool = True):
    """Within the block, each UNet call appends the keys of `layers` (call order) to the yielded list."""
    original = unet.attn_processors
    store: list[torch.Tensor] = []
    last = layers[-1] if stop_early else None
    unet.set_attn_processor({name: KeyCaptureProcessor(proc, store, stop=name == last) if name in layers else proc
                             for name, proc in original.items()})
    try:
        yield store
    finally:
        unet.set_attn_processor(original)


def run_to_keys(unet, *args, **kwargs) -> None:
    """One UNet call that stops once the last captured layer has recorded its keys."""
    try:
        unet(*args, **kwargs)
    except KeysCaptured:
        pass
