"""DreamMover (Shen et al., ECCV 2024): two photos -> N+2 semantically consistent frames, read top-down as the paper."""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .acceleration import unet_runner
from .config import InterpolationConfig
from .correspondence import estimate_flow, estimate_flow_opencv, upsample_features
from .ddim import DDIMSchedule, ddim_invert
from .denoise import EpsModel, clip_order, denoise_chunk, join_chunks, plan_chunks
from .events import Event, EventFn
from .features import extract_features
from .images import load_and_prepare, to_tensor, to_uint8
from .lora import LatentSampler, fit_lora, load_lora, remove_lora
from .lora_merge import lora_scale, merge_lora
from .models import DEFAULT_MODEL, ModelComponents, load_components
from .profiling import StageProfile
from .state import FittedPair, PairState

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

    def __init__(self, components: ModelComponents, compile: bool = False, cuda_graphs: bool = False):
        """compile / cuda_graphs: optional CUDA speed-ups of inference UNet passes (acceleration.py)."""
        self.components = components
        self._runner = unet_runner(components.unet, components.device, compile=compile, cuda_graphs=cuda_graphs)

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_MODEL, vae: str | None = None, device=None, dtype=None,
                        compile: bool = False, cuda_graphs: bool = False, **kwargs) -> "DreamMover":
        return cls(load_components(model, vae=vae, device=device, dtype=dtype, **kwargs), compile=compile,
                   cuda_graphs=cuda_graphs)

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

    def eps_model(self, text_emb: torch.Tensor, profile: StageProfile | None = None, hooked: bool = False) -> EpsModel:
        """hooked: the pass carries a forward hook (features), so it runs eagerly, never from a graph."""
        return EpsModel(self.components.unet, text_emb, profile.count_unet if profile else None,
                        None if hooked else self._runner)

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
        return self.encode_posterior(images)[0] * self.components.vae_scale

    @torch.no_grad()
    def encode_posterior(self, images: Sequence[np.ndarray] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior (mean, std) of prepared images (or of a [-1,1] tensor), unscaled."""
        x = images if isinstance(images, torch.Tensor) else to_tensor(list(images))
        dist = self.components.vae.encode(x.to(self.device, self.dtype)).latent_dist
        return dist.mean, dist.std

    def latent_sampler(self, images: Sequence[np.ndarray], config: InterpolationConfig,
                       posterior: tuple[torch.Tensor, torch.Tensor] | None = None) -> LatentSampler | None:
        """The fit's clean latents per step as the released code: a posterior sample of a Resize+RandomCrop view.

        None for lora_fit_input='posterior_mean' (the fit then uses z0 every step).
        """
        if config.lora_fit_input == "posterior_mean":
            return None
        scale, x = self.components.vae_scale, to_tensor(list(images)).to(self.device)
        h, w = x.shape[-2:]
        # The released Resize(512) + RandomCrop(512) on 512-px inputs: at our working size, Resize(short side)
        # is the identity and the view a random short-side square (the whole image when it is square).
        side = min(h, w)

        def draw(mean: torch.Tensor, std: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            noise = torch.randn(mean.shape, generator=gen, device=mean.device)
            return (mean.float() + std.float() * noise) * scale

        if h == w:  # the view is the image itself: one encode serves every step (the encoder is deterministic)
            mean, std = posterior if posterior is not None else self.encode_posterior(x)
            return lambda gen: draw(mean, std, gen)
        crops = torch.Generator().manual_seed(config.seed)  # on the host: a crop offset is a Python int

        def sample(gen: torch.Generator) -> torch.Tensor:
            i = int(torch.randint(0, h - side + 1, (), generator=crops))
            j = int(torch.randint(0, w - side + 1, (), generator=crops))
            return draw(*self.encode_posterior(x[..., i:i + side, j:j + side]), gen)
        return sample

    # -- step 1: LoRA ---------------------------------------------------------------------------------------
    def fit_lora(self, z0: torch.Tensor, text_emb: torch.Tensor, config: InterpolationConfig,
                 progress: bool = False, images: Sequence[np.ndarray] | None = None,
                 posterior: tuple[torch.Tensor, torch.Tensor] | None = None,
                 on_event: EventFn | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
        """Step 1 (Sec. 3.4): fit the pair's LoRA; it stays active (merged, scale 1) for every later UNet pass.

        images: the prepared pair, needed for lora_fit_input='sampled_views' (the default); posterior:
        their encode_posterior() when the caller has it (saves one VAE pass).
        """
        sampler = None
        if config.lora_fit_input == "sampled_views":
            if images is None:
                warnings.warn("fit_lora without images= fits on the posterior mean z0, not on sampled views "
                              "(lora_fit_input='sampled_views'): pass the prepared pair", stacklevel=2)
            else:
                sampler = self.latent_sampler(images, config, posterior)
        bar = tqdm(total=config.lora_steps, desc="LoRA fit", disable=not progress, leave=False)
        with torch.enable_grad():
            state, losses = fit_lora(
                self.components.unet, z0, text_emb, self.components.scheduler.alphas_cumprod,
                rank=config.lora_rank, lr=config.lora_lr, steps=config.lora_steps, seed=config.seed,
                on_step=lambda i, loss: (bar.update(1),
                                         on_event and on_event(Event("lora", i + 1, config.lora_steps))),
                sample_latents=sampler)
        if losses:
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.close()
        self.use_lora(state, config.lora_rank)
        return state, losses

    def use_lora(self, state: dict[str, torch.Tensor] | None, rank: int, merge: bool = True) -> None:
        """Activate given LoRA weights (e.g. from a cache), or the plain pretrained UNet for None.

        merge: fold it into the UNet's weights (as fast as the plain UNet; the previous weights come back
        bit-exactly on the next call), else keep peft adapter layers.
        """
        unet = self.components.unet
        if state is None:
            remove_lora(unet)
        elif merge:
            merge_lora(unet, state, rank, scale=1.0)
        else:
            load_lora(unet, state, rank)

    # -- steps 3-4: inversion with features on the way ------------------------------------------------
    @torch.no_grad()
    def invert(self, z0: torch.Tensor, text_emb: torch.Tensor, config: InterpolationConfig,
               profile: StageProfile | None = None, progress: bool = False, on_event: EventFn | None = None):
        """Steps 3-4: DDIM inversion (Eq. 3) of both latents; at feature_step, one hooked UNet pass (Sec. 3.2)."""
        schedule, unet = self.schedule(config), self.components.unet
        eps, eager = self.eps_model(text_emb, profile), self.eps_model(text_emb, profile, hooked=True)
        captured: dict[str, torch.Tensor] = {}

        def grab(done: int, t: int, x: torch.Tensor) -> None:
            if on_event is not None:
                on_event(Event("inversion", done, config.inversion_steps))
            if done == config.feature_step and config.flow == "diffusion":
                with profile.stage("features") if profile else nullcontext():
                    captured["f"] = extract_features(lambda: eager(x, t), unet, config.feature_block)

        with tqdm(total=config.inversion_steps, desc="DDIM inversion", disable=not progress, leave=False) as bar, \
                lora_scale(unet, config.lora_invert_scale):
            traj = ddim_invert(eps, z0, schedule, config.inversion_steps, callback=grab, progress=bar)
            if config.flow == "diffusion" and config.feature_step == 0:
                captured["f"] = extract_features(lambda: eager(z0, 0), unet, config.feature_block)
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
                   encoded: tuple[torch.Tensor, torch.Tensor] | None = None,
                   on_event: EventFn | None = None) -> PairState:
        """Steps 2-5 for a prepared pair under the currently active LoRA: everything the frames share.

        encoded: (z0, text_emb) when the caller already has them (the LoRA does not touch VAE or text encoder).
        """
        profile = profile or StageProfile(self.device)
        with profile.stage("encode"):
            z0, emb = encoded if encoded is not None else (self.encode_images(images),
                                                           self.encode_prompt(config.prompt))
        with profile.stage("inversion"):
            traj, feats = self.invert(z0, emb, config, profile, progress, on_event)
        with profile.stage("flow"):
            f01, f10 = self.estimate_flows(feats, images, tuple(z0.shape[-2:]), config)
        if on_event is not None:
            on_event(Event("flow", 1, 1))
        return PairState(traj.z_T, traj.z_T_to_0, f01.float(), f10.float(), emb)

    # -- steps 6-11: fused denoising in chunks ---------------------------------------------------------
    @torch.no_grad()
    def denoise(self, state: PairState, deltas: Sequence[float], config: InterpolationConfig,
                profile: StageProfile | None = None, progress: bool = False, on_step=None,
                on_event: EventFn | None = None) -> torch.Tensor:
        """Steps 6-11 for the given deltas, `frames_per_batch` at a time; returns [2+len(deltas),C,h,w].

        The active LoRA runs at config.lora_denoise_scale (0.8, as the released code) in every attention layer.
        """
        state = state.to(self.device, self.dtype)
        schedule, eps = self.schedule(config), self.eps_model(state.text_emb, profile)
        parts = plan_chunks(deltas, config.frames_per_batch, self.components.unet, tuple(state.z_T.shape[-2:]),
                            self.device, self.dtype)
        steps = config.inversion_steps
        outs = []
        with tqdm(total=steps * len(parts), desc="denoising", disable=not progress, leave=False) as bar, \
                lora_scale(self.components.unet, config.lora_denoise_scale):
            done = [0]  # steps over all chunks (a disabled tqdm does not count)
            for part in parts:
                on_x0 = None if on_event is None else (lambda x0, part=part: on_event(Event(
                    "denoise", done.__setitem__(0, done[0] + 1) or done[0], steps * len(parts), x0, part)))
                outs.append(denoise_chunk(eps, schedule, state, part, config, progress=bar, on_step=on_step,
                                          on_x0=on_x0))
        return join_chunks(outs) if outs else state.z_T

    # -- step 12: decode ---------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch: int = 8, progress: bool = False,
               on_event: EventFn | None = None) -> list[np.ndarray]:
        """Step 12: VAE-decode in chunks to uint8 RGB frames."""
        vae, out = self.components.vae, []
        for i in tqdm(range(0, latents.shape[0], batch), desc="decode", disable=not progress, leave=False):
            x = vae.decode(latents[i:i + batch].to(self.dtype) / self.components.vae_scale).sample
            out += to_uint8((x.float() / 2 + 0.5).clamp(0, 1))
            if on_event is not None:
                on_event(Event("decode", len(out), latents.shape[0]))
        return out

    def clip_frames(self, latents: torch.Tensor, config: InterpolationConfig, inputs: Sequence[np.ndarray] | None = None,
                    progress: bool = False, on_event: EventFn | None = None) -> list[np.ndarray]:
        """Step 12 for denoised [end0, end1, frames...]: the clip end0, frames..., end1 (keep_inputs: `inputs` at the ends)."""
        frames = self.decode(latents, config.decode_batch, progress, on_event)
        return clip_order(frames, inputs if config.keep_inputs else None)

    # -- the render path: one pair's shared state once, then frames at any deltas -------------------------
    def fit_pair(self, images: Sequence[np.ndarray], config: InterpolationConfig, profile: StageProfile | None = None,
                 progress: bool = False, on_event: EventFn | None = None,
                 lora: dict[str, torch.Tensor] | None | str = "fit") -> FittedPair:
        """Steps 1-5 on prepared photos, encoding them once: the pair's LoRA, inversion and flow.

        lora: "fit" (per config: fitted, or the plain UNet when LoRA is off), "active" (keep what the UNet
        carries: a LoRA activated by the caller), or given weights (a cache's) to activate.
        The LoRA stays active for `render`.
        """
        profile = profile or StageProfile(self.device)
        with profile.stage("encode"):
            posterior, emb = self.encode_posterior(images), self.encode_prompt(config.prompt)
            z0 = posterior[0] * self.components.vae_scale  # one VAE pass for z0 and the fit's sampled views
        if on_event is not None:
            on_event(Event("encode", 1, 1))
        losses: list[float] = []
        weights = None if isinstance(lora, str) else lora
        with profile.stage("lora"):
            if lora == "fit" and config.lora and config.lora_steps > 0:
                weights, losses = self.fit_lora(z0, emb, config, progress, images=images, posterior=posterior,
                                                on_event=on_event)
                profile.count_unet(z0.shape[0] * config.lora_steps)
            elif lora != "active":
                self.use_lora(weights, config.lora_rank)
        state = self.pair_state(images, config, profile, progress, encoded=(z0, emb), on_event=on_event)
        return FittedPair(list(images), weights, state, losses)

    def render(self, pair: FittedPair, deltas: Sequence[float], config: InterpolationConfig,
               profile: StageProfile | None = None, progress: bool = False,
               on_event: EventFn | None = None) -> list[np.ndarray]:
        """Steps 6-12 under the active LoRA: the frames at `deltas` in clip order, between the two endpoints."""
        profile = profile or StageProfile(self.device)
        with profile.stage("denoise"):
            latents = self.denoise(pair.state, deltas, config, profile, progress, on_event=on_event)
        with profile.stage("decode"):
            return self.clip_frames(latents, config, pair.images, progress, on_event)

    # -- the whole method --------------------------------------------------------------------------------
    def interpolate(self, image0: ImageLike, image1: ImageLike, config: InterpolationConfig | None = None,
                    progress: bool = False, on_event: EventFn | None = None) -> InterpolationResult:
        """Two photos -> N+2 frames: prepare, fit LoRA, invert, flow, fuse, denoise, decode.

        on_event(Event) hears every step of every stage; raising `events.Cancelled` from it stops the run there.
        """
        config = config or InterpolationConfig()
        profile = StageProfile(self.device)
        with profile.stage("prepare"):
            images = self.prepare(image0, image1, config)
        pair = self.fit_pair(images, config, profile, progress, on_event)
        frames = self.render(pair, config.deltas, config, profile, progress, on_event)
        return InterpolationResult(frames, config.deltas, (pair.state.flow01.cpu(), pair.state.flow10.cpu()),
                                   dict(profile.seconds), dict(profile.unet_evals), pair.lora_losses, config)
