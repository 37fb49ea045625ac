"""Rotated temporal self-attention (Sec. 4.1-4.2, Fig. 2) as a diffusers attention processor on SVD's temporal blocks.

One UNet serves both sampling paths: the forward path (pre-trained f_θ) records its temporal self-attention
maps {A_i}; the backward path (f_θ') replaces its own maps by the 180°-rotated A'_i and, when fine-tuned
weights are given, uses its own W_v / W_o (the only parameters Alg. 1 trains). Keeping W_v / W_o of the
backward model beside the shared UNet avoids a second 1.5 B-parameter copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

TEMPORAL_SELF_ATTN = "temporal_transformer_blocks.0.attn1"
WEIGHT_SUFFIXES = ("to_v.weight", "to_out.0.weight")  # W_v and W_o (Sec. 4.2)

Mode = Literal["plain", "forward", "backward"]


def rotate_attention_map(a: torch.Tensor) -> torch.Tensor:
    """Sec. 4.1: A'_{N-j,N-k} = A_{j,k}, a 180° rotation (flip of both frame axes)."""
    return a.flip(-2, -1)


def temporal_attention_layers(unet) -> list[str]:
    """Module names of SVD's temporal self-attention layers, in execution-independent (sorted) order."""
    return sorted(n for n, _ in unet.named_modules() if n.endswith(TEMPORAL_SELF_ATTN))


class BackwardMotionWeights(nn.Module):
    """W_v and W_o of every temporal self-attention layer of the backward model f_θ' (Fig. 2, green)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.keys = sorted(tensors)
        # ParameterDict keys cannot contain dots; the diffusers names stay the public (file) keys.
        self.params = nn.ParameterDict({k.replace(".", "__"): nn.Parameter(t.detach().clone())
                                        for k, t in tensors.items()})

    @classmethod
    def from_unet(cls, unet) -> "BackwardMotionWeights":
        """Start from the pre-trained weights (Alg. 1 initialises f_θ' as f_θ)."""
        sd = unet.state_dict()
        return cls({f"{layer}.{s}": sd[f"{layer}.{s}"] for layer in temporal_attention_layers(unet)
                    for s in WEIGHT_SUFFIXES})

    def get(self, layer: str, suffix: str) -> torch.Tensor | None:
        key = f"{layer}.{suffix}".replace(".", "__")
        return self.params[key] if key in self.params else None

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors under the UNet's own state-dict names (the authors' checkpoints use the same keys)."""
        return {k: self.params[k.replace(".", "__")].detach().contiguous() for k in self.keys}


@dataclass
class TemporalAttentionControl:
    """Which path the UNet is running and what the backward path borrows from the forward one (Alg. 2 l.6, l.8)."""

    rotated_layers: frozenset[str] = frozenset()
    backward_weights: BackwardMotionWeights | None = None
    mode: Mode = "plain"
    maps: dict[str, torch.Tensor] = field(default_factory=dict)

    def set_mode(self, mode: Mode) -> None:
        if mode == "forward":
            self.maps.clear()  # maps are per step: never let a stale step's maps reach the backward path
        self.mode = mode


class DualPathTemporalAttnProcessor:
    """Temporal self-attention that records A (forward path) or uses rot180(A) with W_v', W_o' (backward path)."""

    def __init__(self, layer: str, control: TemporalAttentionControl):
        self.layer, self.control = layer, control

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, *args, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or hidden_states.ndim != 3:
            raise ValueError("DualPathTemporalAttnProcessor is for SVD's temporal self-attention (attn1) only")
        c = self.control
        backward = c.mode == "backward"
        rotate = backward and self.layer in c.rotated_layers
        record = c.mode == "forward" and self.layer in c.rotated_layers
        w = c.backward_weights if backward else None
        w_v = w.get(self.layer, "to_v.weight") if w is not None else None
        w_o = w.get(self.layer, "to_out.0.weight") if w is not None else None

        residual = hidden_states
        batch, frames, _ = hidden_states.shape  # rows are (video, pixel); the sequence is the frame axis
        heads = attn.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, heads, -1).transpose(1, 2)  # [B·HW, heads, N, d]

        v = split(F.linear(hidden_states, w_v.to(hidden_states.dtype)) if w_v is not None
                  else attn.to_v(hidden_states))
        if rotate:
            if self.layer not in c.maps:
                raise RuntimeError(f"no forward attention map for {self.layer}: run the forward path first (Alg. 2)")
            probs = rotate_attention_map(c.maps[self.layer]).to(v.dtype)
            out = probs @ v
        else:
            q, k = split(attn.to_q(hidden_states)), split(attn.to_k(hidden_states))
            if record:  # the explicit softmax(QK^T/√d) is needed: SDPA does not return the map
                probs = torch.softmax((q @ k.transpose(-1, -2)).float() * attn.scale, dim=-1).to(v.dtype)
                c.maps[self.layer] = probs.detach()
                out = probs @ v
            else:
                out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        out = out.transpose(1, 2).reshape(batch, frames, -1)
        out = F.linear(out, w_o.to(out.dtype), attn.to_out[0].bias) if w_o is not None else attn.to_out[0](out)
        out = attn.to_out[1](out)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_dual_path_attention(unet, control: TemporalAttentionControl) -> None:
    """Put the dual-path processor on every temporal self-attention layer; all other layers keep theirs."""
    procs = dict(unet.attn_processors)
    for layer in temporal_attention_layers(unet):
        procs[f"{layer}.processor"] = DualPathTemporalAttnProcessor(layer, control)
    unet.set_attn_processor(procs)


def rotated_layer_set(unet, which: Literal["all", "up"]) -> frozenset[str]:
    """Layers whose backward map is rot180(A): all (the fine-tuned model, Alg. 1) or only the up blocks (w/o FT)."""
    layers = temporal_attention_layers(unet)
    return frozenset(layers if which == "all" else [n for n in layers if n.startswith("up_blocks.")])
