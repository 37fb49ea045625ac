"""Edit masks m of masked V-DDS: from a mask image or video, or a box for the clip or per frame."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import RestyleInputError

Box = tuple[int, int, int, int]
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}


def parse_box(text: str) -> Box:
    """'x,y,w,h' (pixels) -> (x, y, w, h); RestyleInputError when it is not four integers with w, h > 0."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise RestyleInputError(f"box {text!r} is not x,y,w,h in whole pixels, e.g. 10,20,64,48") from None
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise RestyleInputError(f"box {text!r}: x, y must be >= 0 and w, h > 0")
    return x, y, w, h


def mask_from_box(box: Box | Sequence[Box], n_frames: int, height: int, width: int) -> np.ndarray:
    """(N, H, W) float32 mask: 1 inside the box (one for the clip, or a list of N boxes, one per frame)."""
    boxes = list(box) if box and isinstance(box[0], (tuple, list)) else [tuple(box)] * n_frames
    if len(boxes) != n_frames:
        raise RestyleInputError(f"{len(boxes)} boxes for {n_frames} frames: give one box or one per frame")
    mask = np.zeros((n_frames, height, width), np.float32)
    for i, (x, y, w, h) in enumerate(boxes):
        if x >= width or y >= height:
            raise RestyleInputError(f"box {x},{y},{w},{h} lies outside the {width}x{height} frame")
        mask[i, y:y + h, x:x + w] = 1.0
    return mask


def _gray(frame: np.ndarray) -> np.ndarray:
    f = np.asarray(frame, np.float32)
    f = f.mean(axis=2) if f.ndim == 3 else f
    return f / 255.0 if f.max() > 1.0 else f


def read_mask(path: str | Path, n_frames: int, height: int, width: int) -> np.ndarray:
    """(N, H, W) float32 in [0, 1] from a mask image (all frames) or a mask video (per frame); sizes must match."""
    path = Path(path)
    if not path.is_file():
        raise RestyleInputError(f"mask {path} does not exist")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        from ..video import read_video

        try:
            frames = [_gray(f) for f in read_video(path)]
        except Exception as err:  # any decoder failure is the user's file: one line
            raise RestyleInputError(f"mask video {path} cannot be read ({type(err).__name__})") from None
        if len(frames) != n_frames:
            raise RestyleInputError(f"mask video {path} has {len(frames)} frames, the clip {n_frames}")
    else:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise RestyleInputError(f"mask {path} is not a readable image")
        frames = [_gray(img)]
    mask = np.stack(frames).astype(np.float32)
    if mask.shape[1:] != (height, width):
        raise RestyleInputError(f"mask {path} is {mask.shape[2]}x{mask.shape[1]}, the frames {width}x{height}: "
                                "give a mask of the video's size")
    return np.broadcast_to(mask, (n_frames, height, width)).copy()


def latent_mask(mask: np.ndarray | None, n_frames: int, h: int, w: int) -> torch.Tensor | None:
    """Max-pool a pixel mask (N|1, H, W) to the latent grid (N, h, w): a latent cell is edited if any pixel is."""
    if mask is None:
        return None
    m = torch.as_tensor(np.asarray(mask, np.float32))
    m = m[None] if m.ndim == 2 else m
    m = m.expand(n_frames, *m.shape[1:]) if m.shape[0] == 1 else m
    return F.adaptive_max_pool2d(m[:, None], (h, w))[:, 0].contiguous()

