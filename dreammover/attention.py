"""Reference attention (Eq. 9-10) as a diffusers attention processor."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

NUM_ENDPOINTS = 2


class ReferenceAttnProcessor:
    """Eq. 9-10: in-between frames keep their queries and attend to [K_0; K_1], [V_0; V_1] of the endpoints.

    Batch layout: rows 0 and 1 are the two endpoints (ordinary self-attention), rows 2.. are
    in-between frames. Works with peft LoRA layers (it calls attn.to_q/k/v/out) and torch SDPA.
    """

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("ReferenceAttnProcessor is for self-attention (attn1) only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        shape4d = hidden_states.shape if hidden_states.ndim == 4 else None
        if shape4d is not None:
            b, c, h, w = shape4d
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        batch, length, _ = hidden_states.shape
        heads = attn.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # [B, heads, L, d]

        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(hidden_states)), split(attn.to_v(hidden_states))
        if getattr(attn, "norm_q", None) is not None:
            q, k = attn.norm_q(q), attn.norm_k(k)

        ends = min(NUM_ENDPOINTS, batch)
        out_ends = F.scaled_dot_product_attention(q[:ends], k[:ends], v[:ends])
        if batch > NUM_ENDPOINTS:
            ref_k = torch.cat(list(k[:NUM_ENDPOINTS]), dim=1).unsqueeze(0).expand(batch - ends, -1, -1, -1)
            ref_v = torch.cat(list(v[:NUM_ENDPOINTS]), dim=1).unsqueeze(0).expand(batch - ends, -1, -1, -1)
            out = torch.cat([out_ends, F.scaled_dot_product_attention(q[ends:], ref_k, ref_v)])
        else:
            out = out_ends
        out = out.transpose(1, 2).reshape(batch, length, -1).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if shape4d is not None:
            out = out.transpose(-1, -2).reshape(shape4d)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def self_attention_layers(unet) -> list:
    """Self-attention modules (attn1) of every transformer block, in execution order (down, mid, up)."""
    from diffusers.models.attention import BasicTransformerBlock

    layers = []
    for part in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        layers += [m.attn1 for m in part.modules() if isinstance(m, BasicTransformerBlock)]
    return layers


@contextmanager
def reference_attention(unet, num_blocks: int = 6, enabled: bool = True) -> Iterator[list]:
    """Set ReferenceAttnProcessor on the last `num_blocks` self-attention layers; restore the originals on exit."""
    layers = self_attention_layers(unet)[-num_blocks:] if (enabled and num_blocks > 0) else []
    originals = [layer.processor for layer in layers]
    processor = ReferenceAttnProcessor()
    try:
        for layer in layers:
            layer.set_processor(processor)
        yield layers
    finally:
        for layer, orig in zip(layers, originals):
            layer.set_processor(orig)
