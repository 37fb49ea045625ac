"""Load Stable Diffusion 1.5-style weights: hub id, diffusers folder, single-file checkpoint, `tiny`, `sd15-random`."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model_identity import source_identity

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# Names built from config (no download): the CPU test model, and SD1.5's architecture with random weights.
BUILT_MODELS = ("tiny", "sd15-random")


class ModelLoadError(RuntimeError):
    """Weights could not be found or read; the message says what to do."""


@dataclass
class ModelComponents:
    """The pieces of a latent diffusion model DreamMover uses, plus its identity by content for cache keys."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    identity: str
    device: torch.device
    dtype: torch.dtype

    @property
    def vae_scale(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_cache_dir() -> Path:
    return Path(os.environ.get("DREAMMOVER_HOME", Path.home() / ".cache" / "dreammover"))


def _offline_hint(name: str, err: Exception) -> ModelLoadError:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    how = ("HF_HUB_OFFLINE=1 is set, so nothing is downloaded: download it once with network access, "
           "or pass a local diffusers folder / .safetensors file") if offline else \
        "check the hub id, your network and HF token, or pass a local folder / .safetensors file"
    return ModelLoadError(f"could not load model '{name}': {how} ({type(err).__name__}: {str(err).splitlines()[0][:200]})")


def _load_folder_or_hub(source: str, dtype: torch.dtype, device: torch.device) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw = dict(torch_dtype=dtype, use_safetensors=True)
    text_kw = dict(dtype=dtype, use_safetensors=True)
    if device.type == "cuda":
        # Weights go from the safetensors file straight to the GPU (no CPU copy, no random init first).
        kw["device_map"] = text_kw["device_map"] = {"": str(device)}
    return dict(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kw),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", **kw),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **text_kw),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"),
        scheduler=DDIMScheduler.from_pretrained(source, subfolder="scheduler"),
    )


def _load_single_file(path: Path, dtype: torch.dtype, config: str | None) -> dict:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    kw = dict(torch_dtype=dtype, safety_checker=None, requires_safety_checker=False)
    if config:
        kw["config"] = config
    pipe = StableDiffusionPipeline.from_single_file(str(path), **kw)
    return dict(unet=pipe.unet, vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                scheduler=DDIMScheduler.from_config(pipe.scheduler.config))


def _needs_move(module, device: torch.device) -> bool:
    """Whether any weight is on another device (loaded with device_map, nothing is)."""
    return any(t.device.type != device.type or (device.index is not None and t.device.index != device.index)
               for t in module.parameters())


def _quiet_hub_progress() -> None:
    """Weight-loading progress bars of diffusers/transformers would drown our per-stage bars."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    dlog.disable_progress_bar()
    tlog.disable_progress_bar()


def load_components(model: str = DEFAULT_MODEL, vae: str | None = None, device: str | torch.device | None = None,
                    dtype: torch.dtype | str | None = None, single_file_config: str | None = None,
                    cache_dir: str | Path | None = None) -> ModelComponents:
    """Load UNet, VAE, text encoder, tokenizer and DDIM scheduler from any supported source."""
    _quiet_hub_progress()
    device = torch.device(device) if device is not None else default_device()
    if isinstance(dtype, str):
        dtype = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16,
                 "fp32": torch.float32, "float32": torch.float32}[dtype]
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)

    home = Path(cache_dir or default_cache_dir())
    if model in BUILT_MODELS:  # built from config with a fixed seed, once, then loaded like any folder
        from .tiny import SPECS, ensure_model
        source = str(ensure_model(home / "models", model))
        identity = SPECS[model]["version"]  # our code defines its weights: the version names them
    else:
        source = identity = model
    path = Path(source)
    try:
        if path.is_file():
            if path.suffix != ".safetensors":
                raise ModelLoadError(f"'{model}': only .safetensors checkpoints are loaded (pickled .ckpt/.bin are unsafe)")
            parts = _load_single_file(path, dtype, single_file_config)
        elif path.is_dir():
            if not (path / "unet").is_dir():
                raise ModelLoadError(f"'{model}' is a folder but not a diffusers model (no unet/ subfolder)")
            parts = _load_folder_or_hub(source, dtype, device)
        elif source.endswith((".safetensors", ".ckpt")) or source.startswith((".", "/")):
            raise ModelLoadError(f"model file or folder '{model}' does not exist")
        else:
            parts = _load_folder_or_hub(source, dtype, device)
        if model not in BUILT_MODELS:  # after loading: a hub model is in the local cache by now
            identity = source_identity(source, home)
        if vae:
            from diffusers import AutoencoderKL
            vp = Path(vae)
            parts["vae"] = (AutoencoderKL.from_single_file(vae, torch_dtype=dtype) if vp.is_file()
                            else AutoencoderKL.from_pretrained(vae, torch_dtype=dtype, use_safetensors=True))
            identity += f"|vae={source_identity(vae, home)}"
    except ModelLoadError:
        raise
    except (OSError, ValueError, EnvironmentError) as err:
        raise _offline_hint(model, err) from err

    for name in ("unet", "vae", "text_encoder"):
        m = parts[name]
        if _needs_move(m, device):
            m.to(device)
        m.requires_grad_(False)
        m.eval()
    return ModelComponents(**parts, identity=f"{identity}|{str(dtype).removeprefix('torch.')}",
                           device=device, dtype=dtype)
