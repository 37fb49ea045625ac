"""A null DreamMover for the orchestration benchmark (issue #19): every model step returns zeros of the right shape at once.

`NullDreamMover` overrides only the STEP methods of `dreammover.DreamMover` (encode_posterior,
encode_prompt, fit_lora, use_lora, invert, estimate_flows, denoise, decode); the composites built
from them (encode_images, pair_state, interpolate, and whatever else is composed of these steps)
stay the library's own, so the tasks run their real code paths around a model that costs nothing.
Shapes and dtypes follow the model folder's configs (read, never its weights): latent channels and
the UNet's widths from unet/config.json, the text width from text_encoder/config.json, the VAE
factor and scaling from vae/config.json; SD1.5's values when the source is not a local folder.
deploy/null_preload.py installs it in the pool's workers.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from dreammover import DreamMover
from dreammover.ddim import InversionTrajectory
from dreammover.models import ModelComponents

# SD1.5's shapes, for a source whose configs are not on this machine (a hub id).
SD15 = dict(latent_channels=4, block_out_channels=[320, 640, 1280, 1280], text_dim=768, text_len=77,
            vae_factor=8, scaling_factor=0.18215)


def model_shapes(source: str) -> dict:
    """The shapes a model folder's configs declare (diffusers layout), SD1.5's for anything else."""
    shapes, folder = dict(SD15), Path(source)

    def config(part: str) -> dict:
        try:
            return json.loads((folder / part / "config.json").read_text())
        except (OSError, ValueError):
            return {}

    unet, vae, text = config("unet"), config("vae"), config("text_encoder")
    shapes["latent_channels"] = unet.get("in_channels", shapes["latent_channels"])
    shapes["block_out_channels"] = list(unet.get("block_out_channels", shapes["block_out_channels"]))
    shapes["text_dim"] = text.get("hidden_size", unet.get("cross_attention_dim", shapes["text_dim"]))
    shapes["text_len"] = text.get("max_position_embeddings", shapes["text_len"])
    if vae.get("block_out_channels"):
        shapes["vae_factor"] = 2 ** (len(vae["block_out_channels"]) - 1)
    shapes["scaling_factor"] = vae.get("scaling_factor", shapes["scaling_factor"])
    return shapes


class _NullUNet(torch.nn.Module):
    """Stands in for the UNet where the tasks inspect it (auto_frames_per_batch reads config.block_out_channels)."""

    def __init__(self, shapes: dict):
        super().__init__()
        self.config = SimpleNamespace(block_out_channels=shapes["block_out_channels"],
                                      in_channels=shapes["latent_channels"], cross_attention_dim=shapes["text_dim"])


def null_components(source: str, identity: str | None = None) -> ModelComponents:
    """ModelComponents on the CPU in float32 with no weights; identity is stable per source."""
    shapes = model_shapes(source)
    vae = SimpleNamespace(config=SimpleNamespace(scaling_factor=shapes["scaling_factor"],
                                                 latent_channels=shapes["latent_channels"]))
    return ModelComponents(unet=_NullUNet(shapes), vae=vae, text_encoder=None, tokenizer=None, scheduler=None,
                           identity=identity or f"null-model:{source}", device=torch.device("cpu"),
                           dtype=torch.float32)


class NullDreamMover(DreamMover):
    """DreamMover whose model steps return zeros of the real shapes immediately (no weights, no compute)."""

    def __init__(self, source: str, identity: str | None = None):
        self.shapes = model_shapes(source)
        super().__init__(null_components(source, identity))

    def _latent_hw(self, images) -> tuple[int, int]:
        h, w = (images.shape[-2:] if isinstance(images, torch.Tensor) else np.asarray(images[0]).shape[:2])
        f = self.shapes["vae_factor"]
        return h // f, w // f

    def encode_prompt(self, prompt: str = "") -> torch.Tensor:
        return torch.zeros(1, self.shapes["text_len"], self.shapes["text_dim"], dtype=self.dtype)

    def encode_posterior(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        count = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
        shape = (count, self.shapes["latent_channels"], *self._latent_hw(images))
        return torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype)

    def fit_lora(self, z0: torch.Tensor, text_emb: torch.Tensor, config, progress: bool = False, images=None,
                 posterior=None, on_event=None) -> tuple[dict[str, torch.Tensor], list[float]]:
        # One A/B pair of the configured rank: a real safetensors artifact, a few hundred bytes.
        width = self.shapes["block_out_channels"][0]
        state = {"null.lora_A.weight": torch.zeros(config.lora_rank, width),
                 "null.lora_B.weight": torch.zeros(width, config.lora_rank)}
        return state, [0.0] * max(1, config.lora_steps)

    def use_lora(self, state, rank: int, merge: bool = True) -> None:
        return None

    def invert(self, z0: torch.Tensor, text_emb: torch.Tensor, config, profile=None, progress: bool = False,
               on_event=None):
        zeros = torch.zeros_like(z0)
        traj = InversionTrajectory([0], torch.stack([z0, zeros]), zeros.unsqueeze(0))
        return traj, None

    def estimate_flows(self, features, images: Sequence[np.ndarray], latent_hw: tuple[int, int], config):
        return torch.zeros(2, *latent_hw), torch.zeros(2, *latent_hw)

    def denoise(self, state, deltas: Sequence[float], config, profile=None, progress: bool = False, on_step=None,
                on_event=None) -> torch.Tensor:
        return torch.zeros(2 + len(deltas), *state.z_T.shape[1:], dtype=self.dtype)

    def decode(self, latents: torch.Tensor, batch: int = 8, progress: bool = False, on_event=None) -> list[np.ndarray]:
        h, w = (s * self.shapes["vae_factor"] for s in latents.shape[-2:])
        return [np.zeros((h, w, 3), np.uint8) for _ in range(latents.shape[0])]

