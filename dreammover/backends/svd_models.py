"""Load Stable Video Diffusion components: `tiny-svd`, `svd-random`, a hub id or a local diffusers folder."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..model_identity import source_identity
from ..models import ModelLoadError, _offline_hint, _quiet_hub_progress, default_cache_dir, default_device
from .svd_tiny import CLIP_MEAN, CLIP_STD, TINY_SVD_SIZE, TINY_SVD_VERSION, build_svd_random, ensure_tiny_svd

DEFAULT_SVD_MODEL = "stabilityai/stable-video-diffusion-img2vid-xt"
SVD_MODEL_ALIASES = ("tiny-svd", "svd-random")


@dataclass
class SVDComponents:
    """What the keyframe backend uses of an SVD checkpoint, plus its identity by content for cache keys."""

    unet: Any
    vae: Any
    image_encoder: Any
    scheduler: Any
    clip_mean: tuple[float, float, float]
    clip_std: tuple[float, float, float]
    identity: str
    device: torch.device
    dtype: torch.dtype
    native_size: int = 1024  # long side SVD(-XT) was trained at (1024x576)

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))


def _dtype(device: torch.device, dtype) -> torch.dtype:
    if isinstance(dtype, str):
        table = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
                 "float32": torch.float32}
        if dtype not in table:
            raise ModelLoadError(f"unknown dtype {dtype!r}: use fp16, bf16 or fp32")
        dtype = table[dtype]
    return dtype or (torch.float16 if device.type == "cuda" else torch.float32)


def _clip_norm(source: str) -> tuple[tuple, tuple]:
    """Image mean/std from feature_extractor/preprocessor_config.json (read directly: no torchvision needed)."""
    cfg = Path(source) / "feature_extractor" / "preprocessor_config.json"
    if not cfg.is_file():
        try:
            from huggingface_hub import hf_hub_download

            cfg = Path(hf_hub_download(source, "preprocessor_config.json", subfolder="feature_extractor"))
        except Exception:  # a model without it uses OpenAI CLIP's normalisation, as SVD does
            return CLIP_MEAN, CLIP_STD
    data = json.loads(cfg.read_text())
    return tuple(data.get("image_mean", CLIP_MEAN)), tuple(data.get("image_std", CLIP_STD))


def _load_folder_or_hub(source: str, dtype: torch.dtype) -> dict:
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionModelWithProjection

    kw = dict(torch_dtype=dtype, use_safetensors=True)
    unet = UNetSpatioTemporalConditionModel.from_pretrained(source, subfolder="unet", **kw)  # fails first offline
    mean, std = _clip_norm(source)
    return dict(
        unet=unet,
        vae=AutoencoderKLTemporalDecoder.from_pretrained(source, subfolder="vae", **kw),
        image_encoder=CLIPVisionModelWithProjection.from_pretrained(source, subfolder="image_encoder", dtype=dtype,
                                                                    use_safetensors=True),
        scheduler=EulerDiscreteScheduler.from_pretrained(source, subfolder="scheduler"),
        clip_mean=mean, clip_std=std,
    )


def load_svd_components(model: str = DEFAULT_SVD_MODEL, vae: str | None = None,
                        device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
                        cache_dir: str | Path | None = None) -> SVDComponents:
    """UNet, temporal VAE, CLIP image encoder and Euler scheduler from `tiny-svd`, `svd-random`, a hub id or folder."""
    _quiet_hub_progress()
    device = torch.device(device) if device is not None else default_device()
    dtype = _dtype(device, dtype)
    identity, home = model, Path(cache_dir or default_cache_dir())
    try:
        if model == "svd-random":  # built in memory with a fixed seed: the name is the weights
            parts = dict(build_svd_random(device, dtype), clip_mean=CLIP_MEAN, clip_std=CLIP_STD)
        else:
            source = model
            if model == "tiny-svd":
                source = str(ensure_tiny_svd(home / "models"))
                identity = TINY_SVD_VERSION
            path = Path(source)
            if path.is_dir():
                if not (path / "unet").is_dir() or not (path / "image_encoder").is_dir():
                    raise ModelLoadError(f"'{model}' is a folder but not a diffusers SVD model "
                                         "(needs unet/, vae/, image_encoder/, scheduler/)")
            elif path.is_file() or source.startswith((".", "/")):
                raise ModelLoadError(f"SVD model '{model}' must be a diffusers folder or a hub id "
                                     f"(e.g. {DEFAULT_SVD_MODEL}), not a missing path or a single file")
            parts = _load_folder_or_hub(source, dtype)
            if model != "tiny-svd":  # content of a folder, commit of a hub id (cached by now)
                identity = source_identity(source, home)
        if vae:
            from diffusers import AutoencoderKLTemporalDecoder
            parts["vae"] = AutoencoderKLTemporalDecoder.from_pretrained(vae, torch_dtype=dtype, use_safetensors=True)
            identity += f"|vae={source_identity(vae, home)}"
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as err:
        hint = str(_offline_hint(model, err)).replace(" / .safetensors file", "")  # SVD loads from folders only
        raise ModelLoadError(hint) from err
    for name in ("unet", "vae", "image_encoder"):
        m = parts[name]
        m.to(device)  # from_pretrained / the builders already chose the dtype
        m.requires_grad_(False)
        m.eval()
    return SVDComponents(**parts, identity=f"{identity}|{str(dtype).removeprefix('torch.')}", device=device,
                         dtype=dtype, native_size=TINY_SVD_SIZE if model == "tiny-svd" else 1024)
