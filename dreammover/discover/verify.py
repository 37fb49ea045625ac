"""Is a candidate pair one scene with motion worth a clip? ORB + ratio test + RANSAC homography on thumbnails."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .config import DiscoverConfig

SCENE_CUT, NO_MOTION, TOO_MUCH = "scene cut: not the same scene", "near-duplicate: no motion", "too much motion"


@dataclass
class Features:
    """ORB keypoints (x, y) and binary descriptors of one thumbnail, plus its diagonal (motion is a share of it)."""

    points: np.ndarray
    descriptors: Optional[np.ndarray]
    diagonal: float


@dataclass
class Verdict:
    """The measurements of one candidate and, when rejected, why (`reason` None: accepted)."""

    matches: int
    inliers: int
    inlier_ratio: float
    motion: float
    camera_motion: float
    subject_motion: float
    score: float
    reason: Optional[str]

    def measures(self) -> dict:
        return {"matches": self.matches, "inliers": self.inliers, "inlier_ratio": round(self.inlier_ratio, 3),
                "motion": round(self.motion, 4), "camera_motion": round(self.camera_motion, 4),
                "subject_motion": round(self.subject_motion, 4)}


def features(image: np.ndarray, cfg: DiscoverConfig) -> Features:
    """ORB (Rublee et al. 2011) on the grey thumbnail (an RGB one is turned grey): fast binary features."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    keypoints, descriptors = cv2.ORB_create(nfeatures=cfg.features).detectAndCompute(grey, None)
    points = np.asarray(cv2.KeyPoint_convert(keypoints), np.float32).reshape(-1, 2)  # (x, y) in C++, not a loop
    return Features(points, descriptors, float(np.hypot(*grey.shape[:2])))


def _rejected(reason: str, matches=0, inliers=0, ratio=0.0, motion=0.0, camera=0.0, subject=0.0) -> Verdict:
    return Verdict(matches, inliers, ratio, motion, camera, subject, 0.0, reason)


def compare(f0: Features, f1: Features, cfg: DiscoverConfig) -> Verdict:
    """Same scene: >= min_inliers homography inliers making >= min_inlier_ratio of the ratio-test matches.

    Motion (a share of the diagonal): the larger of the camera's (median displacement of the inliers) and a
    subject's (median displacement of the matches off the homography, when they are >= subject_share of all).
    """
    if f0.descriptors is None or f1.descriptors is None or min(len(f0.points), len(f1.points)) < cfg.min_inliers:
        return _rejected(f"{SCENE_CUT} (too few features to match)")
    # The two nearest descriptors (Hamming) of each f0 feature among f1's: what BFMatcher.knnMatch(k=2) computes
    # (it calls batchDistance), as arrays instead of ~2,000 DMatch objects to loop over in Python.
    dist, nearest = cv2.batchDistance(f0.descriptors, f1.descriptors, -1, normType=cv2.NORM_HAMMING, K=2)
    good = np.flatnonzero((nearest[:, 1] >= 0) & (dist[:, 0] < cfg.ratio * dist[:, 1]))  # Lowe's ratio test
    n_good = len(good)
    if n_good < cfg.min_inliers:
        return _rejected(f"{SCENE_CUT} ({n_good} feature matches < {cfg.min_inliers})", n_good)
    p0 = f0.points[good]
    p1 = f1.points[nearest[good, 0]]
    _, mask = cv2.findHomography(p0, p1, cv2.RANSAC, cfg.ransac_px * f0.diagonal)
    inlier = mask.ravel().astype(bool) if mask is not None else np.zeros(n_good, bool)
    n_in, ratio = int(inlier.sum()), float(inlier.mean())
    if n_in < cfg.min_inliers or ratio < cfg.min_inlier_ratio:
        return _rejected(f"{SCENE_CUT} ({n_in} RANSAC inliers, {ratio:.0%} of {n_good} matches)", n_good, n_in, ratio)
    shift = np.linalg.norm(p1 - p0, axis=1) / f0.diagonal
    camera = float(np.median(shift[inlier]))
    off = shift[~inlier]
    subject = float(np.median(off)) if len(off) and len(off) >= cfg.subject_share * n_good else 0.0
    motion = max(camera, subject)
    measures = (n_good, n_in, ratio, motion, camera, subject)
    if motion < cfg.min_motion:
        return _rejected(f"{NO_MOTION} (motion {motion:.3f} < {cfg.min_motion})", *measures)
    if motion > cfg.max_motion:
        return _rejected(f"{TOO_MUCH} (motion {motion:.3f} > {cfg.max_motion})", *measures)
    # Score 0..1: geometric confidence (inlier ratio), lowered for pairs that barely move (< 3x min_motion).
    score = ratio * min(1.0, motion / (3 * cfg.min_motion)) if cfg.min_motion else ratio
    return Verdict(*measures, round(score, 3), None)
