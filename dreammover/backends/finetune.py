"""Light-weight backward motion fine-tuning (Alg. 1, Sec. 4.2): train only W_v / W_o of temporal self-attention."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..images import to_tensor
from .dual_sampling import PathModel, flip_time
from .svd_config import SVDKeyframeConfig
from .svd_keyframe import SVDKeyframeInterpolator, crop_resize, frame_size
from .temporal_attention import BackwardMotionWeights, rotated_layer_set

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class FinetuneSettings:
    """Alg. 1 hyper-parameters; defaults are Sec. 4.4 (Adam 1e-4, β 0.9/0.999, weight decay 1e-2)."""

    num_frames: int = 14            # N frames per training clip (the released checkpoint: 14, on SVD)
    stride: int = 1                 # frame step inside a clip (the released training script uses 2)
    steps: int = 15000
    lr: float = 1e-4
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    size: int = 1024                # long side; clips are centre-cropped to 16:9 like the keyframes
    p_mean: float = 0.7             # EDM training noise levels of SVD: ln σ ~ N(p_mean, p_std²)
    p_std: float = 1.6
    seed: int = 0


# -- data: a folder of videos (files, or folders of frames) --------------------------------------------------
def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def video_length(video: Path) -> int:
    if video.is_dir():
        return len(_frame_files(video))
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return n


def find_videos(folder: str | Path, min_frames: int) -> list[tuple[Path, int]]:
    """(video, frame count) for every video file or frame folder in `folder` long enough for one clip."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of videos")
    found = [(p, video_length(p)) for p in sorted(folder.iterdir())
             if (p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES) or (p.is_dir() and _frame_files(p))]
    usable = [(p, n) for p, n in found if n >= min_frames]
    if not usable:
        raise FileNotFoundError(f"{folder}: no video (file or folder of frames) with at least {min_frames} frames "
                                f"({len(found)} too short)")
    return usable


def read_frames(video: Path, start: int, count: int, stride: int) -> list[np.ndarray]:
    """RGB uint8 frames start, start+stride, ... (count of them)."""
    import cv2

    wanted = [start + i * stride for i in range(count)]
    if video.is_dir():
        files = _frame_files(video)
        return [cv2.cvtColor(cv2.imread(str(files[i])), cv2.COLOR_BGR2RGB) for i in wanted]
    cap, out, i = cv2.VideoCapture(str(video)), [], 0
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    i = start
    while len(out) < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i in wanted:
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        i += 1
    cap.release()
    if len(out) < count:
        raise ValueError(f"{video}: could only decode {len(out)} of {count} frames from {start}")
    return out


def sample_clip(videos: list[tuple[Path, int]], s: FinetuneSettings, rng: np.random.Generator) -> list[np.ndarray]:
    """Alg. 1 l.2: x ~ p_data, a clip of N frames from a random video at a random start."""
    video, n = videos[rng.integers(len(videos))]
    span = (s.num_frames - 1) * s.stride + 1
    return read_frames(video, int(rng.integers(n - span + 1)), s.num_frames, s.stride)


# -- Alg. 1 ---------------------------------------------------------------------------------------------------
def backward_motion_loss(backend: SVDKeyframeInterpolator, clip: list[np.ndarray], s: FinetuneSettings,
                         gen: torch.Generator) -> torch.Tensor:
    """Alg. 1 l.2-8: ||f_θ'(flip(z_t); t, c_{N-1}, {A'_i}) - y||², y = α_t flip(ε) - σ_t flip(z)."""
    c, dev, dtype = backend.components, backend.device, backend.dtype
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))
    cfg = SVDKeyframeConfig(seed=seed, guidance_scale=1.0)
    with torch.no_grad():
        x = to_tensor(list(clip)).to(dev, c.vae.dtype)
        z = c.vae.encode(x).latent_dist.sample(torch.Generator(dev).manual_seed(seed)) * c.vae_scale
        z = z.unsqueeze(0).to(dtype)                                        # l.2: z = E(x), [1, N, C, h, w]
        cond = backend.encode_keyframes([clip[0], clip[-1]], cfg)           # l.3, l.7: c_0 and c_{N-1}
    sigma = torch.exp(s.p_mean + s.p_std * torch.randn((), generator=gen)).to(dev)  # l.4: noise level
    eps = torch.randn(z.shape, generator=gen).to(dev, dtype)
    z_t = z + sigma * eps                                                   # l.5 (EDM form of α_t z + σ_t ε)
    t = 0.25 * sigma.log()                                                  # SVD's continuous timestep input
    model = PathModel(c.unet, cond, 1.0, backend.control)
    with torch.no_grad():
        model(z_t, t, sigma, side=0)                                        # l.6: {A_i} from f_θ(z_t; t, c_0)
    v = model(flip_time(z_t), t, sigma, side=1)                             # l.7-8 with rot180(A_i)
    alpha, sig_vp = 1 / (sigma ** 2 + 1) ** 0.5, sigma / (sigma ** 2 + 1) ** 0.5
    y = alpha * flip_time(eps) - sig_vp * flip_time(z)                      # v-target of the reversed video
    return torch.nn.functional.mse_loss(v.float(), y.float())


def finetune_backward(backend: SVDKeyframeInterpolator, videos_dir: str | Path, s: FinetuneSettings,
                      on_step: Callable[[int, float], None] | None = None) -> tuple[BackwardMotionWeights, list]:
    """Alg. 1: AdamW on W_v / W_o of every temporal self-attention layer, rotated maps in all of them."""
    videos = find_videos(videos_dir, (s.num_frames - 1) * s.stride + 1)
    unet = backend.components.unet
    weights = BackwardMotionWeights.from_unet(unet).to(backend.device).float()
    backend.control.backward_weights = weights
    backend.control.rotated_layers = rotated_layer_set(unet, "all")
    backend._loaded = ("<training>", None)  # the next interpolate() reloads from its config
    opt = torch.optim.AdamW(weights.parameters(), lr=s.lr, betas=(0.9, 0.999), weight_decay=s.weight_decay)
    rng, gen = np.random.default_rng(s.seed), torch.Generator().manual_seed(s.seed)
    h, w = frame_size(s.size)
    losses = []
    for step in range(s.steps):
        clip = [crop_resize(f, h, w) for f in sample_clip(videos, s, rng)]
        loss = backward_motion_loss(backend, clip, s, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()                                                     # l.8: ∇ over W_{v,o} only
        torch.nn.utils.clip_grad_norm_(weights.parameters(), s.max_grad_norm)
        opt.step()
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
    return weights, losses
