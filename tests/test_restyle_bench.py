"""Restyle bench: the motion-fidelity metric's properties (OpenCV variant), and `dreammover bench --restyle`."""
from __future__ import annotations

import numpy as np
import pytest

from dreammover.evaluation.restyle_metrics import motion_fidelity, opencv_tracks


def _texture(size: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((size // 4, size // 4, 3)).astype(np.float32)
    return (255 * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.uint8)


def moving_clip(n: int = 10, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """A smooth texture moved along a random walk (2-3 px per step, changing direction): every point moves."""
    import cv2

    big, rng = _texture(2 * size, seed), np.random.default_rng(seed + 1)
    pos, out = np.array([size / 2, size / 2]), []
    for _ in range(n):
        m = np.float32([[1, 0, -pos[0]], [0, 1, -pos[1]]])
        out.append(cv2.warpAffine(big, m, (size, size), flags=cv2.INTER_LINEAR))
        angle = rng.uniform(0, 2 * np.pi)
        pos = pos + rng.uniform(2, 3) * np.array([np.cos(angle), np.sin(angle)])
    return out


@pytest.fixture(scope="module")
def clip():
    return moving_clip()


def test_tracks_follow_the_known_motion(clip):
    tracks = opencv_tracks(clip)
    assert len(tracks) > 20
    steps = np.diff(tracks, axis=1)  # every point moves with the texture: the same step for all
    error = np.linalg.norm(steps - np.median(steps, axis=0), axis=-1)
    assert np.percentile(error, 95) < 0.3 and np.linalg.norm(np.median(steps, axis=0), axis=-1).min() > 1.5


def test_identical_clips_score_one(clip):
    assert motion_fidelity(clip, [f.copy() for f in clip]) == pytest.approx(1.0, abs=1e-9)


def test_reversed_or_shuffled_motion_scores_lower(clip):
    same = motion_fidelity(clip, clip)
    reversed_ = motion_fidelity(clip, clip[::-1])
    order = np.random.default_rng(3).permutation(len(clip))
    shuffled = motion_fidelity(clip, [clip[i] for i in order])
    assert reversed_ < same - 0.3 and shuffled < same - 0.3, (reversed_, shuffled)


def test_a_uniformly_translated_copy_keeps_fidelity(clip):
    moved = [np.roll(f, (5, -7), axis=(0, 1)) for f in clip]  # the same motion, seen from another place
    assert motion_fidelity(clip, moved) > 0.97


def test_other_content_with_the_same_motion_keeps_fidelity(clip):
    other = moving_clip(seed=0)  # same walk ...
    recolored = [255 - f for f in other]  # ... other appearance, as an edit changes it
    assert motion_fidelity(clip, recolored) > 0.95
