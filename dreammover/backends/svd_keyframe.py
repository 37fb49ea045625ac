"""Generative Inbetweening (Wang et al. 2024): keyframe interpolation with SVD, behind DreamMover's interface.

Read top-down: prepare the keyframes, encode c_0 / c_{N-1} (per pair, cacheable), dual-directional sampling
(Alg. 2) with the rotated-attention backward path (Sec. 4.1-4.2), decode with the temporal VAE.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..events import Event, EventFn
from ..images import ImageInputError, load_and_prepare, load_image, to_tensor, to_uint8
from ..pipeline import ImageLike, InterpolationResult
from ..profiling import StageProfile
from .backward_weights import load_backward_weights
from .dual_sampling import KeyframeCondition, PathModel, dual_directional_sampling, fusion_weights
from .svd_config import SVDKeyframeConfig
from .svd_models import DEFAULT_SVD_MODEL, SVDComponents, load_svd_components
from .temporal_attention import TemporalAttentionControl, install_dual_path_attention, rotated_layer_set


def frame_size(size: int, aspect: float = 16 / 9) -> tuple[int, int]:
    """(h, w) with the long side `size` and both sides multiples of 64 (SVD's UNet halves the latent 3 times)."""
    r64 = lambda x: max(64, int(x / 64 + 0.5) * 64)  # noqa: E731 - half rounds up, as images.working_size
    return (r64(size / aspect), r64(size)) if aspect >= 1 else (r64(size), r64(size * aspect))


def crop_resize(im: np.ndarray, h: int, w: int) -> np.ndarray:
    """Centre-crop to the aspect w/h, then resize to (h, w)."""
    import cv2

    ih, iw = im.shape[:2]
    ch, cw = (ih, int(round(ih * w / h))) if iw * h > ih * w else (int(round(iw * h / w)), iw)
    top, left = (ih - ch) // 2, (iw - cw) // 2
    interp = cv2.INTER_AREA if h * w < ch * cw else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(im[top:top + ch, left:left + cw], (w, h), interpolation=interp))


def fit_keyframes(image0: np.ndarray, image1: np.ndarray, config: SVDKeyframeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Both keyframes at the working frame: centre-crop to 16:9 then resize, or DreamMover's preparation.

    The one place that decides crop/pad; swap it for the presets' crop/pad when they land.
    """
    if config.size is None:
        raise ValueError("fit_keyframes needs a size: resolve it with SVDKeyframeInterpolator.resolve(config)")
    if config.frame == "input":
        return load_and_prepare(image0, image1, config.size, "cover")
    for name, im in (("image0", image0), ("image1", image1)):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ImageInputError(f"{name}: expected an RGB uint8 array [H,W,3], got {im.dtype} {im.shape}")
    h, w = frame_size(config.size)
    return crop_resize(image0, h, w), crop_resize(image1, h, w)


def clip_resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Resize to the CLIP tower's square input the way SVD was trained: Gaussian anti-aliasing, then bicubic.

    The blur's sigma per axis is (downscale factor - 1) / 2 (kernel about 4 sigma, odd, reflect padding),
    which is what SVD's reference sampling code (and diffusers' pipeline) does before CLIP.
    """
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    for axis, factor in ((-2, h / side), (-1, w / side)):
        sigma = max((factor - 1.0) / 2.0, 0.001)
        k = max(int(4.0 * sigma), 3) | 1  # odd kernel
        t = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
        g = torch.exp(-t ** 2 / (2 * sigma ** 2))
        g = (g / g.sum()).view(1, 1, *((k, 1) if axis == -2 else (1, k))).expand(x.shape[1], 1, -1, -1)
        pad = (0, 0, k // 2, k // 2) if axis == -2 else (k // 2, k // 2, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode="reflect"), g, groups=x.shape[1])
    return F.interpolate(x, size=(side, side), mode="bicubic", align_corners=True)


class SVDKeyframeInterpolator:
    """The SVD keyframe backend: `interpolate(I0, I1, SVDKeyframeConfig)` -> the same result as DreamMover's."""

    name = "svd"

    def __init__(self, components: SVDComponents):
        self.components = components
        self.control = TemporalAttentionControl()
        install_dual_path_attention(components.unet, self.control)
        self._loaded: tuple | None = None  # (path, base) of the backward weights now in `control`

    @classmethod
    def from_pretrained(cls, model: str = DEFAULT_SVD_MODEL, vae: str | None = None, device=None, dtype=None,
                        **kwargs) -> "SVDKeyframeInterpolator":
        return cls(load_svd_components(model, vae=vae, device=device, dtype=dtype, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.components.device

    @property
    def dtype(self) -> torch.dtype:
        return self.components.dtype

    def resolve(self, config: SVDKeyframeConfig | None) -> SVDKeyframeConfig:
        """The config with `size=None` replaced by the model's own long side."""
        config = config or SVDKeyframeConfig()
        return config if config.size is not None else config.model_copy(update={"size": self.components.native_size})

    # -- prepare ---------------------------------------------------------------------------------------
    def prepare(self, image0: ImageLike, image1: ImageLike, config: SVDKeyframeConfig):
        """Load (EXIF-aware, RGB) and bring both keyframes to the working frame."""
        im0 = image0 if isinstance(image0, np.ndarray) else load_image(image0)
        im1 = image1 if isinstance(image1, np.ndarray) else load_image(image1)
        return fit_keyframes(im0, im1, self.resolve(config))

    # -- backward model (Sec. 4.2) -----------------------------------------------------------------------
    def use_backward_model(self, config: SVDKeyframeConfig) -> None:
        """f_θ': fine-tuned W_v/W_o when given, else the rotated-attention-only 'w/o FT' variant (Table 1)."""
        key = (config.backward_weights, config.backward_weights_base)
        if key != self._loaded:
            unet = self.components.unet
            self.control.backward_weights = (load_backward_weights(unet, *key) if config.backward_weights
                                             else None)
            self._loaded = key
        self.control.rotated_layers = rotated_layer_set(self.components.unet, config.rotated_blocks())

    # -- c_0, c_{N-1} (Alg. 2 l.1) -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_keyframes(self, images: Sequence[np.ndarray], config: SVDKeyframeConfig) -> KeyframeCondition:
        """CLIP image embeddings and noise-augmented VAE latents of both keyframes (SVD's conditioning)."""
        c, x = self.components, to_tensor(list(images)).to(self.device, torch.float32)  # [-1, 1]
        side = c.image_encoder.config.image_size
        clip_in = (clip_resize(x, side) + 1.0) / 2.0
        mean = torch.tensor(c.clip_mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(c.clip_std, device=self.device).view(1, 3, 1, 1)
        emb = c.image_encoder(((clip_in - mean) / std).to(self.dtype)).image_embeds.unsqueeze(1)
        # One augmentation noise for both keyframes, as the released code draws it.
        gen = torch.Generator().manual_seed(config.seed)
        noise = torch.randn(x[:1].shape, generator=gen).to(x)
        aug = x + config.noise_aug_strength * noise
        vae = c.vae
        upcast = self.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
        if upcast:  # SVD's VAE encoder overflows in fp16 at high resolution, as diffusers' pipeline notes
            vae.to(torch.float32)
        try:
            lat = vae.encode(aug.to(vae.dtype)).latent_dist.mode()
        finally:
            if upcast:
                vae.to(self.dtype)
        time_ids = torch.tensor([[config.fps - 1, config.motion_bucket_id, config.noise_aug_strength]],
                                device=self.device, dtype=self.dtype)
        return KeyframeCondition(emb.to(self.dtype), lat.to(self.dtype), time_ids)

    # -- Alg. 2 ----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: KeyframeCondition, config: SVDKeyframeConfig, profile: StageProfile | None = None,
               progress: bool = False, on_event: EventFn | None = None) -> torch.Tensor:
        """Dual-directional sampling from z_T ~ N(0, σ_max²) to clean latents [1, N+2, C, h, w].

        `on_event` gets Event('denoise', i, steps) after every step; raising `Cancelled` from it stops the run.
        """
        from diffusers import EulerDiscreteScheduler

        self.use_backward_model(config)
        sched = EulerDiscreteScheduler.from_config(self.components.scheduler.config)  # private copy
        sched.set_timesteps(config.num_inference_steps, device=self.device)
        sigmas = sched.sigmas.to(self.device, torch.float32)
        gen = torch.Generator().manual_seed(config.seed)
        _, ch, h, w = cond.latents.shape
        z_T = torch.randn((1, config.clip_frames, ch, h, w), generator=gen).to(self.device, self.dtype)
        z_T = z_T * sched.init_noise_sigma
        model = PathModel(self.components.unet, cond.to(self.device, self.dtype), config.guidance_scale,
                          self.control, profile.count_unet if profile else None)
        w_fwd = fusion_weights(config.clip_frames, config.fusion, self.device, self.dtype)
        steps = len(sched.timesteps)

        def step_done(i: int) -> None:
            bar.update(1)
            if on_event is not None:
                on_event(Event("denoise", i + 1, steps))

        with tqdm(total=steps, desc="dual-directional sampling", disable=not progress, leave=False) as bar:
            z0 = dual_directional_sampling(
                model, z_T, sched.timesteps.to(self.device), sigmas, w_fwd, config.noise_injection_steps,
                config.noise_injection_ratio, gen, sched.config.prediction_type, on_step=step_done)
        self.control.maps.clear()  # the last step's maps are not needed any more (GPU memory)
        return z0

    # -- decode -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, config: SVDKeyframeConfig, progress: bool = False,
               on_event: EventFn | None = None) -> list[np.ndarray]:
        """Temporal-VAE decode, `decode_chunk` frames per call, to uint8 RGB frames (Event('decode') per call)."""
        vae, z, out = self.components.vae, latents[0] / self.components.vae_scale, []
        for i in tqdm(range(0, z.shape[0], config.decode_chunk), desc="decode", disable=not progress, leave=False):
            part = z[i:i + config.decode_chunk].to(vae.dtype)
            x = vae.decode(part, num_frames=part.shape[0]).sample
            out += to_uint8((x.float() / 2 + 0.5).clamp(0, 1))
            if on_event is not None:
                on_event(Event("decode", len(out), z.shape[0]))
        return out

    # -- the whole method ------------------------------------------------------------------------------------
    def interpolate(self, image0: ImageLike, image1: ImageLike, config: SVDKeyframeConfig | None = None,
                    progress: bool = False, on_event: EventFn | None = None) -> InterpolationResult:
        """Two keyframes -> N+2 frames (frame 0 ≈ I_0, frame N+1 ≈ I_1): prepare, encode, Alg. 2, decode.

        `on_event` (dreammover.events) gets the stages encode, denoise (every step), decode (every chunk);
        raising `Cancelled` from it stops at the next report.
        """
        report = on_event or (lambda ev: None)
        config = self.resolve(config)
        profile = StageProfile(self.device)
        with profile.stage("prepare"):
            self.use_backward_model(config)  # a bad weights file fails here, before any model work
            images = self.prepare(image0, image1, config)
        with profile.stage("encode"):
            report(Event("encode", 0, 1))
            cond = self.encode_keyframes(images, config)
            report(Event("encode", 1, 1))
        with profile.stage("denoise"):
            latents = self.sample(cond, config, profile, progress, on_event)
        with profile.stage("decode"):
            frames = self.decode(latents, config, progress, on_event)
        if config.keep_inputs:
            frames[0], frames[-1] = images[0], images[1]
        no_flow = torch.zeros(0)  # no optical flow in this method; the field stays for a uniform result type
        return InterpolationResult(frames, config.deltas, (no_flow, no_flow.clone()), dict(profile.seconds),
                                   dict(profile.unet_evals), [], config)

