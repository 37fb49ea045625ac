"""Uploaded photos: read without trusting them (byte and pixel limits, full decode), saved as PNG + thumbnails.

All of it is CPU work, so routes call it through `run_in_threadpool`: the event loop keeps serving others.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException

from .guard import mib
from .limits import StudioLimits


def check_image(file, label: str, limits: StudioLimits):
    """An upload (a file object) as an RGB PIL image: size limit, pixel limit (bombs), full decode."""
    from PIL import Image, ImageOps

    file.seek(0, 2)
    size = file.tell()
    file.seek(0)
    if not size:
        raise HTTPException(400, f"{label} is empty: choose a photo")
    if size > limits.upload_bytes:
        raise HTTPException(413, f"{label} is {mib(size)}; the limit is {mib(limits.upload_bytes)} per photo")
    try:
        im = Image.open(file)
        if im.width * im.height > limits.pixels:
            raise HTTPException(413, f"{label} is {im.width}x{im.height} pixels; the limit is "
                                     f"{limits.pixels / 1e6:.0f} megapixels")
        im = ImageOps.exif_transpose(im).convert("RGB")
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(400, f"{label} is not an image we can read (use JPEG, PNG or WebP)") from None
    return im


def save_inputs(folder: Path, images) -> None:
    """The photos as PNG (EXIF applied) plus small thumbnails for the page."""
    for i, im in enumerate(images):
        im.save(folder / f"in{i}.png", compress_level=1)  # lossless either way; level 1 is ~10x faster
        t = im.copy()
        t.thumbnail((256, 256))
        t.save(folder / f"thumb{i}.jpg", quality=85)


def stored_images(folder: Path):
    """A job's saved photos (for a re-render's estimate and warnings)."""
    from PIL import Image

    return [Image.open(folder / f"in{i}.png").convert("RGB") for i in (0, 1)]
