"""Load a latent text-to-video model in Zeroscope's layout: hub id, diffusers folder, `tiny-t2v`, `t2v-random`."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..models import ModelLoadError, _offline_hint, _quiet_hub_progress, default_cache_dir, default_device
from .build import T2V_SPECS, ensure_t2v

DEFAULT_T2V = "cerspense/zeroscope_v2_576w"
BUILT_T2V = tuple(T2V_SPECS)
EMBEDDINGS_KEPT = 8  # prompts whose embeddings stay cached: ∅, ŷ, y of an edit and of a few recent ones
MODEL_WINDOW = 16  # frames per UNet call: Zeroscope's usual clip length (trained at 24, best at 16-24)


@dataclass
class T2VModel:
    """UNet3D, VAE, text encoder, tokenizer and ᾱ_t of a text-to-video model, plus its content identity."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    alphas_cumprod: torch.Tensor
    device: torch.device
    dtype: torch.dtype
    identity: str
    window: int = MODEL_WINDOW
    _embeddings: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def vae_factor(self) -> int:
        """Pixels per latent cell (8 for SD's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Frame sides must be multiples of this: the VAE factor times the UNet's downsampling."""
        return self.vae_factor * 2 ** (len(self.unet.config.down_block_types) - 1)

    @torch.no_grad()
    def embed(self, prompt: str) -> torch.Tensor:
        """CLIP text embedding (1, 77, D) of a prompt; the last few are remembered (a resident model sees many)."""
        if prompt in self._embeddings:
            self._embeddings.move_to_end(prompt)
        else:
            ids = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids.to(self.device)
            self._embeddings[prompt] = self.text_encoder(ids)[0].to(self.dtype)
            while len(self._embeddings) > EMBEDDINGS_KEPT:
                self._embeddings.popitem(last=False)
        return self._embeddings[prompt]


def _resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "fp32": torch.float32, "float32": torch.float32}[dtype]
    return dtype or (torch.float16 if device.type == "cuda" else torch.float32)


def _load_parts(source: str, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet3DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw = dict(torch_dtype=dtype, use_safetensors=True)
    return dict(
        unet=UNet3DConditionModel.from_pretrained(source, subfolder="unet", **kw),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", **kw),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype, use_safetensors=True),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"),
        # Only ᾱ_t is used; DDIM reads any DDPM-family scheduler config.
        alphas_cumprod=DDIMScheduler.from_pretrained(source, subfolder="scheduler").alphas_cumprod.float(),
    )


def load_t2v(spec: str = DEFAULT_T2V, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
             cache_dir: str | Path | None = None) -> T2VModel:
    """Load a text-to-video model (frozen, eval) from `tiny-t2v`, `t2v-random`, a hub id or a local folder."""
    from ..model_identity import source_identity

    _quiet_hub_progress()
    device = torch.device(device) if device is not None else default_device()
    dtype = _resolve_dtype(dtype, device)
    home = Path(cache_dir or default_cache_dir())
    if spec in BUILT_T2V:  # built from config with a fixed seed, once, then loaded like any folder
        source = str(ensure_t2v(home / "models", spec))
    else:
        source = spec
    path = Path(source)
    try:
        if path.is_dir() and not (path / "unet").is_dir():
            raise ModelLoadError(f"'{spec}' is a folder but not a diffusers model (no unet/ subfolder)")
        if not path.exists() and source.startswith((".", "/")):
            raise ModelLoadError(f"model folder '{spec}' does not exist")
        parts = _load_parts(source, dtype)
        identity = T2V_SPECS[spec]["version"] if spec in BUILT_T2V else source_identity(source, home)
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as err:
        raise _offline_hint(spec, err) from err
    for name in ("unet", "vae", "text_encoder"):
        parts[name].to(device).requires_grad_(False).eval()
    return T2VModel(**parts, device=device, dtype=dtype,
                    identity=f"{identity}|{str(dtype).removeprefix('torch.')}")
