"""Chained bursts: K keyframes -> ONE clip of K-1 DreamMover segments (issue #18, DESIGN §8).

Each segment is a pair of consecutive keyframes with its own LoRA (its own `fit_pair`); the clip's
in-between frame budget is split across the segments in proportion to their motion, and a keyframe
two segments share appears once (segment i's last frame is segment i+1's first: the copy is dropped).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .config import InterpolationConfig
from .events import EventFn
from .images import load_image, prepare_pair

MOTION_SIDE = 64  # long side (px) of the thumbnails the motion measure compares: cheap, and enough for a mean


def split_frames(total: int, motions: Sequence[float], minimum: int = 2) -> list[int]:
    """In-between frames per segment: `minimum` each, the rest in proportion to motion; the sum is exactly `total`.

    Largest-remainder rounding keeps it monotone: a segment with more motion never gets fewer frames.
    Motions that are all zero (or missing) split the rest evenly.
    """
    n = len(motions)
    if n == 0:
        raise ValueError("a chain needs at least one segment (two keyframes)")
    if minimum < 0:
        raise ValueError(f"minimum frames per segment must be >= 0 (got {minimum})")
    if total < minimum * n:
        raise ValueError(f"{total} in-between frames cannot give {n} segments {minimum} each: "
                         f"ask for at least {minimum * n} frames (--frames)")
    weights = [max(0.0, float(m)) if np.isfinite(m) else 0.0 for m in motions]
    if sum(weights) <= 0:
        weights = [1.0] * n
    spare, norm = total - minimum * n, sum(weights)
    shares = [spare * w / norm for w in weights]
    counts = [int(np.floor(s)) for s in shares]
    # The frames floor() left over go to the largest remainders; ties to the larger motion, then the earlier segment.
    order = sorted(range(n), key=lambda i: (-(shares[i] - counts[i]), -weights[i], i))
    for i in order[:spare - sum(counts)]:
        counts[i] += 1
    return [minimum + c for c in counts]


def segment_motion(image0: np.ndarray, image1: np.ndarray, side: int = MOTION_SIDE) -> float:
    """Mean DIS flow magnitude between two RGB uint8 images on `side`-px thumbnails, as a fraction of the width."""
    from .correspondence import estimate_flow_opencv

    h, w = image0.shape[:2]
    scale = side / max(h, w)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    thumbs = [_thumb(im, size) for im in (image0, image1)]
    flow01, _ = estimate_flow_opencv(thumbs[0], thumbs[1], size, method="dis")
    return float(flow01.norm(dim=0).mean()) / size[1]


def _thumb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(np.ascontiguousarray(image), (size[1], size[0]), interpolation=cv2.INTER_AREA)


def prepare_keyframes(images: Sequence, size: int = 512, policy: str = "cover") -> list[np.ndarray]:
    """Step 0 for K keyframes (paths or RGB arrays): all in keyframe 0's working frame, as `prepare_pair` fits a pair."""
    if len(images) < 2:
        raise ValueError(f"a chain needs at least two keyframes (got {len(images)})")
    loaded = [im if isinstance(im, np.ndarray) else load_image(im) for im in images]
    return [prepare_pair(loaded[0], im, size, policy)[1] for im in loaded]


def chain_configs(config: InterpolationConfig, motions: Sequence[float], minimum: int = 2,
                  total: int | None = None) -> list[InterpolationConfig]:
    """Each segment's config: `config` with its share of the `total` in-between frames (config.num_frames) as num_frames.

    A budget too small for `minimum` per segment (a long burst at the default frame count) gives each segment
    one in-between instead of failing; fewer frames than segments is refused (a segment needs one).
    """
    total = config.num_frames if total is None else total
    if len(motions) and total < minimum * len(motions):
        minimum = 1
    counts = split_frames(total, motions, minimum)
    return [config.model_copy(update={"num_frames": n}) for n in counts]


def join_segments(segments: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """One clip from segments in order: each segment after the first loses its first frame (the shared keyframe)."""
    clip: list[np.ndarray] = []
    for i, frames in enumerate(segments):
        if len(frames) < 2:
            raise ValueError(f"segment {i} has {len(frames)} frame(s): a segment has both its keyframes")
        clip.extend(frames if i == 0 else frames[1:])
    return clip


def render_chain(dm, images: Sequence, config: InterpolationConfig | None = None,
                 motions: Sequence[float] | None = None, minimum: int = 2, progress: bool = False,
                 on_event: EventFn | None = None) -> list[np.ndarray]:
    """K keyframes -> one clip of config.num_frames + K frames: K-1 segments, each fit (own LoRA) and rendered.

    motions: one per segment (e.g. a discover manifest's); None measures them (`segment_motion`).
    """
    config = config or InterpolationConfig()
    frames = prepare_keyframes(images, config.size, config.resize_policy)
    if motions is None:
        motions = [segment_motion(a, b) for a, b in zip(frames, frames[1:])]
    if len(motions) != len(frames) - 1:
        raise ValueError(f"{len(frames)} keyframes need {len(frames) - 1} motions (got {len(motions)})")
    segments = []
    for (a, b), seg in zip(zip(frames, frames[1:]), chain_configs(config, motions, minimum)):
        dm.use_lora(None, seg.lora_rank)  # the previous segment's LoRA is merged: fit this one on the plain UNet
        pair = dm.fit_pair([a, b], seg, progress=progress, on_event=on_event)
        segments.append(dm.render(pair, seg.deltas, seg, progress=progress, on_event=on_event))
    dm.use_lora(None, config.lora_rank)  # leave the model as it came: no segment's LoRA stays merged
    return join_segments(segments)
