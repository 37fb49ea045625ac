"""Step 0: load and prepare the input pair (EXIF orientation, RGB, common working size)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


class ImageInputError(ValueError):
    """An input image is missing or unreadable; the message names the file and the problem."""


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H,W,3] with its EXIF orientation applied."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path}: file not found")
    if path.is_dir():
        raise ImageInputError(f"{path}: is a folder, expected an image file")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB")).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageInputError(f"{path}: not a readable image ({err})") from err


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) with the long side at `long_side` and both sides rounded to multiples of 64 (at least 64)."""
    scale = long_side / max(height, width)
    # half rounds up (Python round() would send 4.5 down to 4)
    return (max(64, int(height * scale / 64 + 0.5) * 64), max(64, int(width * scale / 64 + 0.5) * 64))


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def prepare_pair(image0: np.ndarray, image1: np.ndarray, size: int = 512,
                 policy: str = "cover") -> tuple[np.ndarray, np.ndarray]:
    """Bring both images to image 0's working frame.

    policy 'cover': image 1 is scaled to cover that frame and centre-cropped (keeps its aspect);
    'stretch': image 1 is resized to the frame directly.
    """
    for name, im in (("image0", image0), ("image1", image1)):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ImageInputError(f"{name}: expected an RGB uint8 array [H,W,3], got {im.dtype} {im.shape}")
    h, w = working_size(image0.shape[0], image0.shape[1], size)
    out0 = _resize(image0, h, w)
    if policy == "stretch":
        out1 = _resize(image1, h, w)
    elif policy == "cover":
        s = max(h / image1.shape[0], w / image1.shape[1])
        ch, cw = max(h, int(np.ceil(image1.shape[0] * s))), max(w, int(np.ceil(image1.shape[1] * s)))
        big = _resize(image1, ch, cw)
        top, left = (ch - h) // 2, (cw - w) // 2
        out1 = np.ascontiguousarray(big[top:top + h, left:left + w])
    else:
        raise ValueError(f"unknown resize policy {policy!r}: use 'cover' or 'stretch'")
    return out0, out1


def load_and_prepare(image0, image1, size: int = 512, policy: str = "cover") -> tuple[np.ndarray, np.ndarray]:
    """Step 0 from paths or RGB arrays: load what is a path, then `prepare_pair`."""
    im0 = image0 if isinstance(image0, np.ndarray) else load_image(image0)
    im1 = image1 if isinstance(image1, np.ndarray) else load_image(image1)
    return prepare_pair(im0, im1, size, policy)


def to_tensor(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 RGB [H,W,3] (or a list) -> float [B,3,H,W] in [-1, 1]."""
    arr = np.stack(images) if isinstance(images, list) else images[None]
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> list[np.ndarray]:
    """float [B,3,H,W] in [0, 1] -> list of uint8 RGB [H,W,3]."""
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arr)
