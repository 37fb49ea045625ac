"""Settings of one DreamMotion edit (spec: ../shared/papers/dreammotion.md); every field typed and documented."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# λ_s, λ_t are not published: calibrated (dreammover/restyle/calibrate.py) so that, on the defaults, each
# SSM gradient's norm is of the order of the DDS one, on t2v-random (Zeroscope's architecture; no real
# weights offline); docs/restyle.md "## Settings" gives the figures.
LAMBDA_S = 1.0e6
LAMBDA_T = 1.0e8


class RestyleConfig(BaseModel):
    """Every setting of a DreamMotion edit; `fingerprint()` names all those that change the result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(200, ge=0, description="optimisation iterations per window (spec: 200)")
    guidance_scale: float = Field(7.5, ge=0, description="classifier-free guidance w of both DDS branches (DDS default)")
    lr: float = Field(0.4, gt=0, description="SGD learning rate on the latents (reported: 0.4)")
    t_min: int = Field(50, ge=1, description="smallest sampled timestep, inclusive (U(0.05, 0.95) of 1000)")
    t_max: int = Field(950, le=1000, description="largest sampled timestep, exclusive")
    dds_scale: float = Field(2000.0, ge=0, description="DDS loss scale; the gradient is dds_scale/(h*w) * g (DDS notebook)")
    lambda_s: float = Field(LAMBDA_S, ge=0, description="weight of the spatial self-similarity loss (calibrated)")
    lambda_t: float = Field(LAMBDA_T, ge=0, description="weight of the temporal self-similarity loss (calibrated)")
    spatial_ssm: bool = Field(True, description="use S-SSM (off: ablation 'no S-SSM')")
    temporal_ssm: bool = Field(True, description="use T-SSM (off: ablation 'no T-SSM')")
    use_mask: bool = Field(True, description="limit DDS to the mask when one is given (off: ablation 'no mask')")
    ssm_blocks: tuple[int, ...] | None = Field(
        None, description="decoder up_blocks whose spatial attn1 keys feed the SSM losses; None = all with attention")
    window: int = Field(16, ge=1, description="frames per UNet window (Zeroscope was trained on 16-24)")
    overlap: int = Field(4, ge=0, description="frames shared by neighbouring windows")
    windowing: bool = Field(True, description="split clips longer than `window`; off: the whole clip is one window")
    max_pixels: int = Field(576 * 320, ge=64 * 64, description="frames larger than this (H*W) are scaled down first")
    seed: int = Field(0, description="seed of t and ε; same seed, same edit")
    checkpointing: bool = Field(False, description="gradient checkpointing in the UNet: less memory, ~30% slower")
    autocast: bool = Field(True, description="fp16/bf16 autocast of the UNet on CUDA (never on CPU)")

    @model_validator(mode="after")
    def _consistent(self) -> "RestyleConfig":
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be below t_max ({self.t_max})")
        if self.overlap >= self.window:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than window ({self.window})")
        return self

    def fingerprint(self) -> dict:
        """Every field that changes the result: all but `checkpointing` (same result, less memory; autocast
        changes the precision, so it stays)."""
        data = self.model_dump(mode="json")
        data.pop("checkpointing")
        return data
