"""Step 0: load and prepare the input pair (EXIF orientation, RGB, common working size)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

# Larger inputs are refused before decoding: a guard against decompression bombs (a few KB of PNG that
# decode to gigabytes). 150 MP still admits the largest phone photos (108 MP) and stays below Pillow's own
# hard limit, so every refusal reads the same.
MAX_PIXELS = 150_000_000
# An input upscaled more than this per side is warned about: the clip will be blurry.
UPSCALE_WARN = 2.0
# Cover keeping less than this share of an image's area is warned about: most of the photo is cut away.
CROP_WARN = 0.5


class ImageInputError(ValueError):
    """An input image is missing or unreadable; the message names the file and the problem."""


class ImageInputWarning(UserWarning):
    """An input was changed in a way the user may not expect (transparency, animation, upscaling, cropping)."""


def _warn(message: str) -> None:
    warnings.warn(message, ImageInputWarning, stacklevel=3)


def _to_rgb(im, path: Path) -> np.ndarray:
    """RGB uint8 of any Pillow mode: 16-bit and float greys are rescaled, transparency is flattened onto white."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # Pillow's convert("RGB") clips these to 0..255, so a 16-bit grey photo came out all white.
        arr = np.asarray(im).astype(np.float64)
        if im.mode == "F":
            top = 1.0 if arr.size and arr.max() <= 1.0 else 255.0
        else:
            top = 65535.0 if arr.size and arr.max() > 255 else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            _warn(f"{path}: transparent pixels flattened onto white ({(alpha < 255).mean():.0%} of the image)")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, rgba).convert("RGB")).copy()
        return np.asarray(rgba.convert("RGB")).copy()
    return np.asarray(im.convert("RGB")).copy()


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 [H,W,3] with its EXIF orientation applied.

    Refuses (ImageInputError) what cannot be used; warns (ImageInputWarning) about what was changed:
    transparency flattened onto white, the first frame taken of an animation.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path}: file not found")
    if path.is_dir():
        raise ImageInputError(f"{path}: is a folder, expected an image file")
    too_big = (f"{path}: {{}} image, over the {MAX_PIXELS // 1_000_000} megapixel limit (refused as a possible "
               "decompression bomb): downscale it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise ImageInputError(too_big.format(f"{w}x{h} ({w * h / 1e6:.0f} megapixel)"))
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    _warn(f"{path}: animated image with {frames} frames, using the first one")
                im = ImageOps.exif_transpose(im)
                return _to_rgb(im, path)
    except Image.DecompressionBombError as err:  # Pillow's own hard limit fires on open, before we see the size
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        raise ImageInputError(too_big.format(f"{int(pixels[1]) / 1e6:.0f} megapixel" if pixels else "a huge")) from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, ImageInputError):
            raise
        raise ImageInputError(f"{path}: not a readable image ({err})") from err


def working_size(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) with the long side at `long_side` and both sides rounded to multiples of 64 (at least 64)."""
    scale = long_side / max(height, width)
    # half rounds up (Python round() would send 4.5 down to 4)
    return (max(64, int(height * scale / 64 + 0.5) * 64), max(64, int(width * scale / 64 + 0.5) * 64))


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    import cv2

    if img.shape[:2] == (h, w):
        return img.copy()
    interp = cv2.INTER_AREA if h * w < img.shape[0] * img.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(img, (w, h), interpolation=interp)


def cover_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """The centred region of `img` with the frame's aspect h:w (what 'cover' keeps before resizing)."""
    ih, iw = img.shape[:2]
    if ih * w > iw * h:     # taller than the frame: keep full width, crop rows
        ch, cw = max(1, min(ih, round(iw * h / w))), iw
    else:                   # wider than the frame: keep full height, crop columns
        ch, cw = ih, max(1, min(iw, round(ih * w / h)))
    top, left = (ih - ch) // 2, (iw - cw) // 2
    return img[top:top + ch, left:left + cw]


def _fit(img: np.ndarray, h: int, w: int, policy: str, name: str) -> np.ndarray:
    """One image to the (h, w) frame by `policy`; warns when most of it is cut away or it is blown up."""
    src = cover_crop(img, h, w) if policy == "cover" else img
    kept = src.shape[0] * src.shape[1] / (img.shape[0] * img.shape[1])
    if kept < CROP_WARN:
        _warn(f"{name} is {img.shape[1]}x{img.shape[0]}: 'cover' keeps only its centre "
              f"{src.shape[1]}x{src.shape[0]} ({kept * 100:.2g}%) for the {w}x{h} frame; "
              "resize_policy 'stretch' keeps all")
    up = max(h / src.shape[0], w / src.shape[1])
    if up > UPSCALE_WARN:
        _warn(f"{name} is {img.shape[1]}x{img.shape[0]}: upscaled {up:.3g}x to {w}x{h}, the clip will be blurry "
              "(use a larger photo or a smaller size)")
    return np.ascontiguousarray(_resize(src, h, w))


def prepare_pair(image0: np.ndarray, image1: np.ndarray, size: int = 512,
                 policy: str = "cover") -> tuple[np.ndarray, np.ndarray]:
    """Bring both images to one working frame (image 0's aspect, `size` on the long side, multiples of 64).

    Both images get the same geometry, so identical inputs give identical outputs:
    'cover' centre-crops each to the frame's aspect, then resizes (no distortion);
    'stretch' resizes each to the frame directly (keeps everything, distorts the aspect).
    """
    if policy not in ("cover", "stretch"):
        raise ValueError(f"unknown resize policy {policy!r}: use 'cover' or 'stretch'")
    for name, im in (("image0", image0), ("image1", image1)):
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ImageInputError(f"{name}: expected an RGB uint8 array [H,W,3], got {im.dtype} {im.shape}")
    h, w = working_size(image0.shape[0], image0.shape[1], size)
    return _fit(image0, h, w, policy, "image0"), _fit(image1, h, w, policy, "image1")


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
