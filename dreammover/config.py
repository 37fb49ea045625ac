"""Typed configuration of one interpolation; defaults are the paper's (DESIGN §3)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Fields whose change invalidates the per-pair LoRA or inversion/flow caches (DESIGN §4).
LORA_FIELDS = ("lora", "lora_rank", "lora_lr", "lora_steps", "lora_fit_input", "prompt", "size", "resize_policy",
               "seed")
INVERSION_FIELDS = LORA_FIELDS + (
    "num_inference_steps", "inversion_steps", "feature_step", "feature_block", "flow", "lora_invert_scale",
)


class InterpolationConfig(BaseModel):
    """All knobs of DreamMover; frozen so it can be hashed into cache keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Step 0: preparation
    size: int = Field(512, ge=64, description="long side in pixels, rounded to a multiple of 64")
    resize_policy: Literal["cover", "stretch"] = "cover"
    prompt: str = ""
    seed: int = 0
    # Step 1: LoRA (Sec. 3.4, supp. E.1)
    lora: bool = True
    lora_rank: int = Field(16, ge=1)
    lora_lr: float = Field(5e-4, gt=0)
    lora_steps: int = Field(80, ge=0)
    lora_fit_input: Literal["sampled_views", "posterior_mean"] = Field(
        "sampled_views", description="released code: a posterior sample of a Resize+RandomCrop view each step")
    lora_invert_scale: float = Field(1.0, ge=0, description="LoRA scale during inversion and feature extraction")
    lora_denoise_scale: float = Field(0.8, ge=0, description="LoRA scale in every attention layer while denoising")
    # Step 3: DDIM schedule and inversion
    num_inference_steps: int = Field(50, ge=2)
    inversion_steps: int = Field(30, ge=1)
    guidance_scale: float = Field(1.0, description="no classifier-free guidance in DreamMover")
    # Step 4-5: diffusion features and flow
    feature_step: int = Field(14, ge=0, description="inversion steps before feature extraction")
    feature_block: int = Field(1, ge=0, description="index into unet.up_blocks")
    flow: Literal["diffusion", "dis", "farneback"] = Field(
        "diffusion", description="Eq. 5 on diffusion features, or OpenCV DIS / Farneback (Table-3 ablation)")
    flow_chunk_rows: int = Field(4096, ge=1)
    # Step 6-9: fusion
    splat_alpha: float = 10.0
    fusion: Literal["two_level", "direct"] = "two_level"
    wta_mode: Literal["select", "splat"] = "select"
    # Step 11: reference attention
    reference_attention: bool = True
    reference_blocks: int = Field(6, ge=0, description="last k self-attention blocks of the up path")
    # Frames, batching, output
    num_frames: int = Field(32, ge=1, description="in-between frames N; the clip has N+2")
    frames_per_batch: int | Literal["auto"] = Field(
        "auto", description="in-between frames per UNet batch; 'auto': as many as the device's free memory holds")
    decode_batch: int = Field(8, ge=1)
    keep_inputs: bool = False

    @field_validator("flow", mode="before")
    @classmethod
    def _flow_alias(cls, value):
        return "dis" if value == "opencv" else value  # 'opencv' was the name of the DIS ablation before Farneback

    def model_post_init(self, __context) -> None:
        if self.inversion_steps > self.num_inference_steps:
            raise ValueError("inversion_steps must not exceed num_inference_steps")
        if self.feature_step >= self.inversion_steps:
            raise ValueError("feature_step must be smaller than inversion_steps")
        if isinstance(self.frames_per_batch, int) and self.frames_per_batch < 1:
            raise ValueError("frames_per_batch must be a positive number or 'auto'")
        if self.guidance_scale != 1.0:
            raise ValueError("DreamMover uses no classifier-free guidance (guidance_scale must be 1)")

    @property
    def deltas(self) -> list[float]:
        """Times delta_i = i/(N+1) of the in-between frames."""
        n = self.num_frames
        return [i / (n + 1) for i in range(1, n + 1)]

    def subset(self, fields: tuple[str, ...]) -> dict:
        """The named fields, for cache keys that must ignore everything else."""
        return {f: getattr(self, f) for f in fields}
