"""Bad restyle input: one actionable line, raised before any model work."""
from __future__ import annotations

from typing import Sequence

import numpy as np


class RestyleInputError(ValueError):
    """An edit that cannot start as asked; the one-line message says what to change."""


def frame_shape(frames) -> tuple[int, int, int]:
    """(count, height, width) of a list or array of (H, W, 3) frames; RestyleInputError when empty or ragged."""
    if frames is None or len(frames) == 0:
        raise RestyleInputError("the video has no frames (empty or unreadable): give a clip with at least one frame")
    shapes = {tuple(np.asarray(f).shape) for f in frames}
    if len(shapes) != 1:
        raise RestyleInputError(f"frames differ in size ({sorted(shapes)[:2]}): all frames must be one size")
    shape = shapes.pop()
    if len(shape) != 3 or shape[2] != 3:
        raise RestyleInputError(f"frames must be RGB (H, W, 3), got shape {shape}")
    return len(frames), shape[0], shape[1]


def check_restyle_inputs(frames: Sequence[np.ndarray], source_prompt: str, target_prompt: str,
                         mask: np.ndarray | None, config, max_frames: int | None = None) -> None:
    """Raise RestyleInputError for input an edit cannot use: no frames, too many, a mask of another size, no target prompt."""
    n, h, w = frame_shape(frames)
    if max_frames is not None and n > max_frames:
        raise RestyleInputError(f"the video has {n} frames, more than the limit of {max_frames}: "
                                "trim it or raise --max-frames")
    if not isinstance(target_prompt, str) or not target_prompt.strip():
        raise RestyleInputError("the target prompt is empty: say what the clip should look like, e.g. 'an oil painting'")
    if source_prompt is not None and not isinstance(source_prompt, str):
        raise RestyleInputError("the source prompt must be text")
    if mask is not None:
        m = np.asarray(mask)
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise RestyleInputError(f"the mask must be (H, W) or (N, H, W), got shape {m.shape}")
        if m.shape[1:] != (h, w):
            raise RestyleInputError(f"the mask is {m.shape[2]}x{m.shape[1]} but the frames are {w}x{h}: "
                                    "give a mask of the video's size")
        if m.shape[0] not in (1, n):
            raise RestyleInputError(f"the mask has {m.shape[0]} frames but the video has {n}: "
                                    "give one mask image or a mask video of the same length")
