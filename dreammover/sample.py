"""A procedural sample pair made by the project itself (no third-party images in the package)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def sample_pair(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Two RGB frames of one scene: a ball moves right and down, a bar rotates, over a fixed gradient."""
    import cv2

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([80 + 100 * xx, 120 + 60 * yy, 200 - 80 * xx * yy], -1).astype(np.uint8)
    frames = []
    for t in (0.0, 1.0):
        im = base.copy()
        c = (int(size * (0.3 + 0.35 * t)), int(size * (0.35 + 0.2 * t)))
        cv2.circle(im, c, size // 7, (230, 90, 40), -1, lineType=cv2.LINE_AA)
        cv2.circle(im, (c[0] - size // 20, c[1] - size // 20), size // 30, (255, 220, 200), -1, cv2.LINE_AA)
        box = cv2.boxPoints(((size * 0.7, size * 0.72), (size * 0.35, size * 0.08), 10 + 50 * t))
        cv2.fillPoly(im, [box.astype(np.int32)], (40, 60, 160), lineType=cv2.LINE_AA)
        frames.append(im)
    return frames[0], frames[1]


def write_sample_pair(folder: str | Path, size: int = 256) -> list[Path]:
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(sample_pair(size)):
        p = folder / f"{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        paths.append(p)
    return paths
