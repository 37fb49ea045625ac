"""Text-to-video models in Zeroscope's layout built from config: `tiny-t2v` (CPU tests), `t2v-random` (GPU benches).

Zeroscope v2 576w = ModelScope's UNet3DConditionModel (320/640/1280/1280, 64 heads, OpenCLIP-H text
width 1024) + SD's VAE. Values below are those of the hub's config.json files; the text encoder keeps
Zeroscope's width and depth but uses our byte-level tokenizer (vocabulary size does not change compute).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..tiny import _write_tokenizer, byte_text_encoder, save_modules, sd_vae

TINY_T2V_VERSION = "tiny-t2v-v1"
T2V_RANDOM_VERSION = "t2v-random-v1"

UNET3D_BLOCKS = dict(
    down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
    up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
)
# Zeroscope's scheduler: SD's scaled-linear betas over 1000 steps (only alphas_cumprod is used).
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1)

T2V_SPECS = {
    "tiny-t2v": dict(
        version=TINY_T2V_VERSION, dtype=torch.float32,
        unet=dict(down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                  up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
                  block_out_channels=(32, 64), layers_per_block=1, attention_head_dim=4, norm_num_groups=8,
                  cross_attention_dim=32, sample_size=8, in_channels=4, out_channels=4),
        vae=dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=64),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  projection_dim=32),
    ),
    "t2v-random": dict(
        version=T2V_RANDOM_VERSION, dtype=torch.float16,  # stored as fp16, as the hub's weights are
        unet=dict(**UNET3D_BLOCKS, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                  attention_head_dim=64, norm_num_groups=32, cross_attention_dim=1024, sample_size=32,
                  in_channels=4, out_channels=4, norm_eps=1e-5, act_fn="silu", downsample_padding=1),
        vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512),
        text=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                  projection_dim=512, hidden_act="gelu"),
    ),
}


def build_t2v_modules(spec: str = "tiny-t2v"):
    """UNet3DConditionModel, AutoencoderKL and CLIPTextModel of the named spec, initialised from the global RNG."""
    from diffusers import UNet3DConditionModel

    cfg = T2V_SPECS[spec]
    return UNet3DConditionModel(**cfg["unet"]), sd_vae(cfg["vae"]), byte_text_encoder(cfg["text"])


def build_t2v(folder: str | Path, spec: str = "tiny-t2v", seed: int = 0) -> Path:
    """Build the named text-to-video model from config with a fixed seed; save it as a diffusers folder."""
    from diffusers import DDIMScheduler

    from ..models import _quiet_hub_progress

    _quiet_hub_progress()
    folder, cfg = Path(folder), T2V_SPECS[spec]
    torch.manual_seed(seed)
    unet, vae, text_encoder = build_t2v_modules(spec)
    save_modules(folder, {"unet": unet, "vae": vae, "text_encoder": text_encoder}, cfg["dtype"])
    DDIMScheduler(**SCHEDULER).save_pretrained(folder / "scheduler")
    _write_tokenizer(folder / "tokenizer")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "TextToVideoSDPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet3DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }, indent=2))
    (folder / "TINY_VERSION").write_text(cfg["version"])
    return folder


def ensure_t2v(cache_dir: str | Path, spec: str = "tiny-t2v") -> Path:
    """The named built model's folder under cache_dir, built once (atomic rename; concurrent builders agree)."""
    from ..atomic import publish_folder

    version = T2V_SPECS[spec]["version"]

    def ready(folder: Path) -> bool:
        marker = folder / "TINY_VERSION"
        return marker.is_file() and marker.read_text() == version

    return publish_folder(Path(cache_dir) / version, ready, lambda tmp: build_t2v(tmp, spec))
