"""Typed configuration of the Generative Inbetweening backend (Wang et al. 2024); defaults are the paper's / SVD's."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SVDKeyframeConfig(BaseModel):
    """All knobs of keyframe interpolation with SVD (dual-directional sampling, Alg. 2); frozen and hashable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Frames and frame size
    num_frames: int = Field(23, ge=1, description="in-between frames N; the clip has N+2 (23 -> SVD-XT's 25)")
    size: int | None = Field(None, ge=64, description="long side in pixels, rounded to a multiple of 64; "
                             "None: the model's own (1024 for SVD, as it was trained; 128 for tiny-svd)")
    frame: Literal["16:9", "input"] = Field(
        "16:9", description="'16:9': centre-crop both keyframes to SVD's training aspect; "
                            "'input': keep image 0's aspect (image 1 covers it), as DreamMover prepares pairs")
    # SVD micro-conditioning (Sec. 4.4: SVD defaults)
    fps: int = Field(7, ge=1, description="SVD is conditioned on fps-1")
    motion_bucket_id: int = Field(127, ge=0)
    noise_aug_strength: float = Field(0.02, ge=0)
    guidance_scale: float = Field(2.0, ge=1.0, description="image CFG, the same on every frame; 1 disables it")
    # Sampling (Alg. 2, Sec. 4.3)
    num_inference_steps: int = Field(50, ge=1)
    fusion: Literal["mean", "linear"] = Field(
        "mean", description="'mean': the paper's simple average; 'linear': forward weight 1 -> 0 over the frames")
    noise_injection_steps: int = Field(5, ge=0, description="per-step recurrence: re-noise and re-denoise R times")
    noise_injection_ratio: float = Field(0.5, ge=0, le=1, description="fraction of the steps with recurrence")
    # Backward model (Sec. 4.2)
    backward_weights: str | None = Field(None, description="fine-tuned W_v/W_o (.safetensors or UNet folder)")
    backward_weights_base: str | None = Field(
        None, description="the UNet the weights were tuned from: apply W + (W_ft - W_base), as the authors do")
    rotate_blocks: Literal["auto", "all", "up"] = Field(
        "auto", description="where the backward path uses rot180(A): 'auto' = all with weights, up without")
    # Output
    seed: int = 0
    decode_chunk: int = Field(8, ge=1, description="frames per temporal-VAE decode call")
    keep_inputs: bool = False

    @property
    def clip_frames(self) -> int:
        """Frames SVD generates: the N in-between frames and both keyframes."""
        return self.num_frames + 2

    @property
    def deltas(self) -> list[float]:
        """Times i/(N+1) of the in-between frames (the same convention as DreamMover)."""
        n = self.num_frames
        return [i / (n + 1) for i in range(1, n + 1)]

    def rotated_blocks(self) -> Literal["all", "up"]:
        """Table 1 'w/o FT' rotates only the up blocks; the fine-tuned model was trained rotating all of them."""
        if self.rotate_blocks != "auto":
            return self.rotate_blocks
        return "all" if self.backward_weights else "up"
