"""Long clips and any size: overlapping frame windows, and frame sizes the UNet and VAE accept."""
from __future__ import annotations

import math

import numpy as np


def plan_windows(n_frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of `window` frames covering the clip, neighbours sharing >= `overlap` frames.

    A clip of at most `window` frames is one window; the last window ends at the clip's end."""
    if n_frames <= window:
        return [(0, n_frames)]
    stride = window - overlap
    starts = list(range(0, n_frames - window, stride)) + [n_frames - window]
    return [(s, s + window) for s in starts]


def fit_size(height: int, width: int, multiple: int, max_pixels: int) -> tuple[int, int]:
    """(H, W) nearest to the input's with the same aspect, sides multiples of `multiple`, H·W <= max_pixels."""
    shrink = min(1.0, math.sqrt(max_pixels / (height * width)))

    def side(x: float) -> int:
        return max(multiple, int(round(x * shrink / multiple)) * multiple)

    h, w = side(height), side(width)
    while h * w > max_pixels and max(h, w) > multiple:  # rounding up may overshoot the budget by a row
        if h >= w:
            h -= multiple
        else:
            w -= multiple
    return h, w


def resize_frames(frames: list[np.ndarray], height: int, width: int) -> list[np.ndarray]:
    """Frames at (height, width): area filter when shrinking, cubic when enlarging; unchanged when equal."""
    import cv2

    out = []
    for f in frames:
        if f.shape[:2] == (height, width):
            out.append(f)
            continue
        shrink = height * width < f.shape[0] * f.shape[1]
        out.append(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC))
    return out
