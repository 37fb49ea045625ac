"""The restyle metrics of DreamMotion's evaluation (Jeong et al. 2024), on local weights only.

- Motion fidelity (Yatim et al. 2023): tracklets of the source and of the edit, compared by their normalised
  per-step displacements. The paper tracks with CoTracker; the weight-free variant here tracks with OpenCV
  (goodFeaturesToTrack + pyramidal Lucas-Kanade, forward-backward checked) and is labelled as such.
- CLIP text alignment and frame consistency, from a local CLIP folder (transformers' CLIPModel layout).
- Frame LPIPS under both readings of the paper (edit vs source per frame; consecutive frames of the edit).
Nothing is downloaded: a metric without weights is reported as "n/a (no weights)".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

MOTION_OPENCV = "motion fidelity (OpenCV LK tracks; not CoTracker)"
MOTION_COTRACKER = "motion fidelity (CoTracker)"
STILL_PX = 0.05  # displacements shorter than this (px) count as "not moving" (see step_similarity)


def _gray(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2GRAY)


def opencv_tracks(frames: Sequence[np.ndarray], max_points: int = 300, fb_tolerance: float = 1.0) -> np.ndarray:
    """Tracklets (P, N, 2) of corners of frame 0 followed frame to frame with pyramidal LK; only points that stay
    tracked (in the frame, forward-backward error < `fb_tolerance` px) through the whole clip are kept."""
    import cv2

    grays = [_gray(f) for f in frames]
    h, w = grays[0].shape
    pts = cv2.goodFeaturesToTrack(grays[0], maxCorners=max_points, qualityLevel=0.01,
                                  minDistance=max(2, min(h, w) // 40), blockSize=5)
    if pts is None:
        return np.zeros((0, len(frames), 2), np.float32)
    pts = pts.reshape(-1, 1, 2).astype(np.float32)
    track, alive = [pts.reshape(-1, 2)], np.ones(len(pts), bool)
    lk = dict(winSize=(15, 15), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    for a, b in zip(grays, grays[1:]):
        nxt, ok, _ = cv2.calcOpticalFlowPyrLK(a, b, pts, None, **lk)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(b, a, nxt, None, **lk)
        fb = np.linalg.norm((back - pts).reshape(-1, 2), axis=1)
        xy = nxt.reshape(-1, 2)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1)
        alive &= ok.ravel().astype(bool) & ok_back.ravel().astype(bool) & (fb < fb_tolerance) & inside
        track.append(xy)
        pts = nxt
    return np.stack(track, 1)[alive]


def step_similarity(src: np.ndarray, edit: np.ndarray) -> np.ndarray:
    """corr(τ, τ~) of Yatim et al.: mean over steps k of the cosine of the displacements v_k, v~_k, for every
    (edit tracklet, source tracklet) pair -> (P_edit, P_src). A step where both points stand still
    (< STILL_PX) agrees (1), where only one moves it does not (0): the cosine of a zero vector is undefined."""
    v = np.diff(src, axis=1)[None]       # (1, Ps, N-1, 2)
    u = np.diff(edit, axis=1)[:, None]   # (Pe, 1, N-1, 2)
    nv, nu = np.linalg.norm(v, axis=-1), np.linalg.norm(u, axis=-1)
    cos = (v * u).sum(-1) / np.maximum(nv * nu, 1e-12)
    still_v, still_u = nv < STILL_PX, nu < STILL_PX
    cos = np.where(still_v & still_u, 1.0, np.where(still_v | still_u, 0.0, cos))
    return cos.mean(-1)


def motion_fidelity_from_tracks(src: np.ndarray, edit: np.ndarray) -> float:
    """MF = mean over edited tracklets of the max over source tracklets of corr (Yatim et al., Sec. 5)."""
    if len(src) == 0 or len(edit) == 0 or src.shape[1] < 2:
        return float("nan")
    return float(step_similarity(src, edit).max(axis=1).mean())


def motion_fidelity(source: Sequence[np.ndarray], edit: Sequence[np.ndarray], tracker=None) -> float:
    """Motion fidelity of `edit` to `source` on tracks from `tracker` (default: the OpenCV variant)."""
    if len(source) != len(edit):
        raise ValueError(f"the edit has {len(edit)} frames, the source {len(source)}")
    tracker = tracker or opencv_tracks
    return motion_fidelity_from_tracks(tracker(source), tracker(edit))


def cotracker_tracks(weights: str | Path, grid: int = 20):
    """A tracker on CoTracker (Karaev et al. 2023) from a local checkpoint; needs the `cotracker` package."""
    try:
        import torch
        from cotracker.predictor import CoTrackerPredictor
    except ImportError:
        raise RuntimeError("--cotracker-weights needs the cotracker package (not installed here); "
                           "the OpenCV variant of motion fidelity is reported instead") from None
    model = CoTrackerPredictor(checkpoint=str(weights)).eval()

    @torch.no_grad()
    def track(frames: Sequence[np.ndarray]) -> np.ndarray:
        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None].float()
        tracks, visible = model(video, grid_size=grid)
        keep = visible[0].all(0).numpy()
        return tracks[0].permute(1, 0, 2).numpy()[keep]

    return track


def _embedding(out):
    """The projected embedding: a tensor (transformers 4) or the output's pooler_output (transformers 5)."""
    return out if hasattr(out, "norm") else out.pooler_output


@dataclass
class ClipScorer:
    """CLIP image and text embeddings (unit length) from a local transformers CLIP folder."""

    model: object
    processor: object
    name: str

    def images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            inputs = self.processor(images=list(frames), return_tensors="pt")
            e = _embedding(self.model.get_image_features(pixel_values=inputs["pixel_values"]))
        return (e / e.norm(dim=-1, keepdim=True)).numpy()

    def text(self, prompt: str) -> np.ndarray:
        import torch

        with torch.no_grad():
            inputs = self.processor(text=[prompt], return_tensors="pt", padding=True, truncation=True)
            e = _embedding(self.model.get_text_features(input_ids=inputs["input_ids"],
                                                        attention_mask=inputs["attention_mask"]))
        return (e / e.norm(dim=-1, keepdim=True)).numpy()[0]


def load_clip_scorer(folder: str | Path) -> ClipScorer:
    """CLIPModel + CLIPProcessor from a local folder (local_files_only: never downloads)."""
    from transformers import CLIPModel, CLIPProcessor

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"--clip-model {folder}: not a CLIP model folder (no config.json)")
    model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
    return ClipScorer(model, CLIPProcessor.from_pretrained(str(folder), local_files_only=True), folder.name)


def clip_text_alignment(scorer: ClipScorer, frames: Sequence[np.ndarray], prompt: str) -> float:
    """Mean over frames of cos(CLIP image, CLIP text of the target prompt)."""
    return float((scorer.images(frames) @ scorer.text(prompt)).mean())


def clip_frame_consistency(scorer: ClipScorer, frames: Sequence[np.ndarray]) -> float:
    """Mean CLIP image-image cosine of consecutive frames."""
    e = scorer.images(frames)
    return float((e[:-1] * e[1:]).sum(-1).mean()) if len(e) > 1 else float("nan")


def lpips_to_source(lpips, edit: Sequence[np.ndarray], source: Sequence[np.ndarray]) -> float:
    """Frame LPIPS, reading 1: mean over frames of LPIPS(edit_i, source_i) (lower = closer to the source)."""
    return float(lpips.batch(list(edit), list(source)).mean())


def lpips_consecutive(lpips, edit: Sequence[np.ndarray]) -> float:
    """Frame LPIPS, reading 2: mean of LPIPS(edit_i, edit_i+1) (lower = smoother in time)."""
    return float(lpips.batch(list(edit[:-1]), list(edit[1:])).mean()) if len(edit) > 1 else float("nan")
