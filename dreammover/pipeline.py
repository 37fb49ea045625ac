"""DreamMover (Shen et al., ECCV 2024): two photos -> N+2 semantically consistent frames, read top-down as the paper."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .config import InterpolationConfig
from .correspondence import estimate_flow, estimate_flow_opencv, upsample_features
from .ddim import DDIMSchedule, ddim_invert
from .denoise import EpsModel, chunks, denoise_chunk
from .features import extract_features
from .images import load_and_prepare, to_tensor, to_uint8
from .lora import fit_lora, load_lora, remove_lora
from .models import DEFAULT_MODEL, ModelComponents, load_components
from .profiling import StageProfile
from .state import PairState

ImageLike = str | Path | np.ndarray


@dataclass
class InterpolationResult:
    """N+2 uint8 RGB frames (endpoints included), the flows, and where the time and UNet passes went."""

    frames: list[np.ndarray]
    deltas: list[float]
    flows: tuple[torch.Tensor, torch.Tensor]
    seconds: dict[str, float]
    unet_evals: dict[str, int]
    lora_losses: list[float] = field(default_factory=list)
    config: InterpolationConfig | None = None


class DreamMover:
    """The method as a library: every step of DESIGN §3 is a method callable on its own (teacher forcing)."""

    def __init__(self, components: ModelComponents):
        self.components = components

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, vae: str | None = None, device=None, dtype=None,
                        **kwargs) -> "DreamMover":
        return cls(load_components(model, vae=vae, device=device, dtype=dtype, **kwargs))

    # -- helpers -------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.components.device

    @property
    def dtype(self) -> torch.dtype:
        return self.components.dtype

    def schedule(self, config: InterpolationConfig) -> DDIMSchedule:
        from diffusers import DDIMScheduler

        # A private copy: set_timesteps must not mutate the loaded scheduler.
        return DDIMSchedule.from_scheduler(DDIMScheduler.from_config(self.components.scheduler.config),
                                           config.num_inference_steps)

    def eps_model(self, text_emb: torch.Tensor, profile: StageProfile | None = None) -> EpsModel:
        return EpsModel(self.components.unet, text_emb, profile.count_unet if profile else None)

    # -- step 0: prepare ---------------------------------------------------------------------------------
    def prepare(self, image0: ImageLike, image1: ImageLike, config: InterpolationConfig):
        """Step 0: load (EXIF-aware), convert to RGB and bring both images to one working size."""
        return load_and_prepare(image0, image1, config.size, config.resize_policy)

    @torch.no_grad()
    def encode_prompt(self, prompt: str = "") -> torch.Tensor:
        """The one text condition used for both inputs and every frame (no CFG)."""
        tok = self.components.tokenizer
        ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids.to(self.device)
        return self.components.text_encoder(ids)[0].to(self.dtype)

    # -- step 2: encode ------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Step 2: z0 = VAE posterior mean x scaling factor."""
        x = to_tensor(list(images)).to(self.device, self.dtype)
        return self.components.vae.encode(x).latent_dist.mean * self.components.vae_scale

    # -- step 1: LoRA ---------------------------------------------------------------------------------------
    def fit_lora(self, z0: torch.Tensor, text_emb: torch.Tensor, config: InterpolationConfig,
                 progress: bool = False) -> tuple[dict[str, torch.Tensor], list[float]]:
        """Step 1 (Sec. 3.4): fit the pair's LoRA; it stays active for every later UNet pass."""
        bar = tqdm(total=config.lora_steps, desc="LoRA fit", disable=not progress, leave=False)
        with torch.enable_grad():
            state, losses = fit_lora(
                self.components.unet, z0, text_emb, self.components.scheduler.alphas_cumprod,
                rank=config.lora_rank, lr=config.lora_lr, steps=config.lora_steps, seed=config.seed,
                on_step=lambda i, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.4f}")))
        bar.close()
        return state, losses

    def use_lora(self, state: dict[str, torch.Tensor] | None, rank: int) -> None:
        """Activate given LoRA weights (e.g. from a cache), or the plain pretrained UNet for None."""
        if state is None:
            remove_lora(self.components.unet)
        else:
            load_lora(self.components.unet, state, rank)

    # -- steps 3-4: inversion with features on the way ------------------------------------------------
    @torch.no_grad()
    def invert(self, z0: torch.Tensor, text_emb: torch.Tensor, config: InterpolationConfig,
               profile: StageProfile | None = None, progress: bool = False):
        """Steps 3-4: DDIM inversion (Eq. 3) of both latents; at feature_step, one hooked UNet pass (Sec. 3.2)."""
        schedule, unet = self.schedule(config), self.components.unet
        eps = self.eps_model(text_emb, profile)
        captured: dict[str, torch.Tensor] = {}

        def grab(done: int, t: int, x: torch.Tensor) -> None:
            if done == config.feature_step and config.flow == "diffusion":
                with profile.stage("features") if profile else nullcontext():
                    captured["f"] = extract_features(lambda: eps(x, t), unet, config.feature_block)

        with tqdm(total=config.inversion_steps, desc="DDIM inversion", disable=not progress, leave=False) as bar:
            traj = ddim_invert(eps, z0, schedule, config.inversion_steps, callback=grab, progress=bar)
        if config.flow == "diffusion" and config.feature_step == 0:
            captured["f"] = extract_features(lambda: eps(z0, 0), unet, config.feature_block)
        return traj, captured.get("f")

    # -- step 5: flow ---------------------------------------------------------------------------------------
    def estimate_flows(self, features: torch.Tensor | None, images: Sequence[np.ndarray],
                       latent_hw: tuple[int, int], config: InterpolationConfig):
        """Step 5 (Eq. 5) from diffusion features, or the classical-flow ablation."""
        if config.flow != "diffusion":
            f01, f10 = estimate_flow_opencv(images[0], images[1], latent_hw, method=config.flow)
            return f01.to(self.device), f10.to(self.device)
        feats = upsample_features(features, latent_hw)
        return estimate_flow(feats[0], feats[1], chunk_rows=config.flow_chunk_rows)

    def pair_state(self, images: Sequence[np.ndarray], config: InterpolationConfig,
                   profile: StageProfile | None = None, progress: bool = False,
                   encoded: tuple[torch.Tensor, torch.Tensor] | None = None) -> PairState:
        """Steps 2-5 for a prepared pair under the currently active LoRA: everything the frames share.

        encoded: (z0, text_emb) when the caller already has them (the LoRA does not touch VAE or text encoder).
        """
        profile = profile or StageProfile(self.device)
        with profile.stage("encode"):
            z0, emb = encoded if encoded is not None else (self.encode_images(images),
                                                           self.encode_prompt(config.prompt))
        with profile.stage("inversion"):
            traj, feats = self.invert(z0, emb, config, profile, progress)
        with profile.stage("flow"):
            f01, f10 = self.estimate_flows(feats, images, tuple(z0.shape[-2:]), config)
        return PairState(traj.z_T, traj.z_T_to_0, f01.float(), f10.float(), emb)

    # -- steps 6-11: fused denoising in chunks ---------------------------------------------------------
    @torch.no_grad()
    def denoise(self, state: PairState, deltas: Sequence[float], config: InterpolationConfig,
                profile: StageProfile | None = None, progress: bool = False, on_step=None) -> torch.Tensor:
        """Steps 6-11 for the given deltas, `frames_per_batch` at a time; returns [2+len(deltas),C,h,w]."""
        state = state.to(self.device, self.dtype)
        schedule, eps = self.schedule(config), self.eps_model(state.text_emb, profile)
        parts = chunks(deltas, config.frames_per_batch)
        steps = config.inversion_steps
        ends, frames = None, []
        with tqdm(total=steps * len(parts), desc="denoising", disable=not progress, leave=False) as bar:
            for part in parts:
                out = denoise_chunk(eps, schedule, state, part, config, progress=bar, on_step=on_step)
                ends = out[:2] if ends is None else ends
                frames.append(out[2:])
        return torch.cat([ends, *frames]) if frames else state.z_T

    # -- step 12: decode ---------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch: int = 8, progress: bool = False) -> list[np.ndarray]:
        """Step 12: VAE-decode in chunks to uint8 RGB frames."""
        vae, out = self.components.vae, []
        for i in tqdm(range(0, latents.shape[0], batch), desc="decode", disable=not progress, leave=False):
            x = vae.decode(latents[i:i + batch].to(self.dtype) / self.components.vae_scale).sample
            out += to_uint8((x.float() / 2 + 0.5).clamp(0, 1))
        return out

    # -- the whole method --------------------------------------------------------------------------------
    def interpolate(self, image0: ImageLike, image1: ImageLike, config: InterpolationConfig | None = None,
                    progress: bool = False) -> InterpolationResult:
        """Two photos -> N+2 frames: prepare, fit LoRA, invert, flow, fuse, denoise, decode."""
        config = config or InterpolationConfig()
        profile = StageProfile(self.device)
        with profile.stage("prepare"):
            images = self.prepare(image0, image1, config)
        losses: list[float] = []
        with profile.stage("encode"):
            z0, emb = self.encode_images(images), self.encode_prompt(config.prompt)
        with profile.stage("lora"):
            if config.lora and config.lora_steps > 0:
                _, losses = self.fit_lora(z0, emb, config, progress)
                profile.count_unet(z0.shape[0] * config.lora_steps)
            else:
                self.use_lora(None, config.lora_rank)
        state = self.pair_state(images, config, profile, progress, encoded=(z0, emb))
        with profile.stage("denoise"):
            latents = self.denoise(state, config.deltas, config, profile, progress)
        with profile.stage("decode"):
            frames = self.decode(latents, config.decode_batch, progress)
        if config.keep_inputs:
            frames[0], frames[1] = images[0], images[1]
        # denoise() returns [end0, end1, frames...]; the clip is end0, frames..., end1.
        clip = [frames[0], *frames[2:], frames[1]]
        return InterpolationResult(clip, config.deltas, (state.flow01.cpu(), state.flow10.cpu()),
                                   dict(profile.seconds), dict(profile.unet_evals), losses, config)
