"""Stable Video Diffusion (img2vid-xt) shaped models built from config: `tiny-svd` (CPU tests) and `svd-random`.

`tiny-svd` has SVD-XT's block topology (4 down / 4 up spatio-temporal blocks, temporal self-attention in
every transformer block, temporal VAE decoder, CLIP vision tower with projection) at tiny widths, written
as a normal diffusers folder with a fixed seed so the real folder-loading path is exercised. `svd-random`
is the full-size architecture with random weights, built in memory on the target device, for GPU timing
and memory figures without downloading 10 GB.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_SVD_VERSION = "tiny-svd-v1"
TINY_SVD_SIZE = 128  # its default long side: a CPU test model makes noise at any size, so keep it cheap
# OpenAI CLIP normalisation, which SVD's image encoder uses.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The scheduler of stabilityai/stable-video-diffusion-img2vid-xt (EDM sigmas through EulerDiscreteScheduler).
SVD_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    prediction_type="v_prediction", interpolation_type="linear", use_karras_sigmas=True,
    sigma_min=0.002, sigma_max=700.0, timestep_spacing="leading", timestep_type="continuous", steps_offset=1,
)


def _tiny_parts(seed: int = 0) -> dict:
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    # diffusers hard-codes 32 GroupNorm groups in SVD's blocks, so widths are multiples of 32.
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, block_out_channels=(32, 32, 64, 64),
        num_attention_heads=(2, 2, 4, 4), cross_attention_dim=32, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, layers_per_block=1, num_frames=14,
    )
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        layers_per_block=1, latent_channels=4, sample_size=64, scaling_factor=0.18215,
    )
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=32, hidden_act="gelu",
    ))
    return dict(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER))


def _write_feature_extractor(folder: Path, size: int) -> None:
    """CLIPImageProcessor config (only its normalisation is used; written directly: no torchvision needed)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "CLIPImageProcessor", "do_normalize": True, "do_resize": True,
        "do_center_crop": True, "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3,
        "size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size},
        "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
    }, indent=2))


def build_tiny_svd(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny SVD from config with a fixed seed and save it as a diffusers folder."""
    folder = Path(folder)
    parts = _tiny_parts(seed)
    for name, part in parts.items():
        part.save_pretrained(folder / name)
    _write_feature_extractor(folder / "feature_extractor", parts["image_encoder"].config.image_size)
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableVideoDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNetSpatioTemporalConditionModel"],
        "vae": ["diffusers", "AutoencoderKLTemporalDecoder"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    }, indent=2))
    (folder / "TINY_VERSION").write_text(TINY_SVD_VERSION)
    return folder


def ensure_tiny_svd(cache_dir: str | Path) -> Path:
    """The tiny SVD folder under cache_dir, built once (an explicit, named write; unique temp folder renamed
    into place, so processes that build at once never share one: the first rename wins)."""
    from ..atomic import publish_folder

    def ready(folder: Path) -> bool:
        marker = folder / "TINY_VERSION"
        return marker.is_file() and marker.read_text() == TINY_SVD_VERSION

    return publish_folder(Path(cache_dir) / TINY_SVD_VERSION, ready, build_tiny_svd)


def build_svd_random(device: torch.device, dtype: torch.dtype, seed: int = 0) -> dict:
    """SVD-XT's full-size architecture (UNet 1.5 B, ViT-H/14 image tower, temporal VAE) with random weights."""
    from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from diffusers.utils import logging as dlog

    torch.manual_seed(seed)
    verbosity = dlog.get_verbosity()
    dlog.set_verbosity_error()  # `.to(dtype)` on a fresh model warns about fp32 modules SVD does not have
    with torch.device(device):  # initialise on the accelerator: 2 B parameters are slow to fill on a CPU
        unet = UNetSpatioTemporalConditionModel(num_frames=25).to(dtype)
        vae = AutoencoderKLTemporalDecoder(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            layers_per_block=2, latent_channels=4, sample_size=768).to(dtype)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
            image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu")).to(dtype)
    dlog.set_verbosity(verbosity)
    return dict(unet=unet, vae=vae, image_encoder=image_encoder, scheduler=EulerDiscreteScheduler(**SVD_SCHEDULER))
