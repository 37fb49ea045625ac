"""Capture data of one photo from its header (EXIF, no pixels decoded) and its small thumbnail (reduced JPEG decoding)."""
from __future__ import annotations

import functools
import io
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import PurePosixPath
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel

# What cameras and phones write; other files in an archive (sidecars, notes) are reported and skipped.
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".heic", ".heif", ".png", ".tif", ".tiff", ".webp"}
HEIF_SUFFIXES = {".heic", ".heif"}
# EXIF tags (EXIF 2.32): IFD0 Make, Model, Orientation; the Exif IFD's capture time, its sub-seconds and UTC offset.
MAKE, MODEL, ORIENTATION, EXIF_IFD = 0x010F, 0x0110, 0x0112, 0x8769
DATETIME_ORIGINAL, SUBSEC_ORIGINAL, OFFSET_ORIGINAL = 0x9003, 0x9291, 0x9011


class PhotoProblem(Exception):
    """Why a photo cannot be used: one line for the report (never stops discovery)."""


class Photo(BaseModel):
    """One photo of the archive as discovery sees it; `when` orders photos (seconds: UTC when the offset is known)."""

    key: str
    uri: str = ""
    version: str = ""
    size: int = 0
    taken: Optional[datetime] = None
    time_source: Literal["exif", "file"] = "exif"
    camera: str = ""
    orientation: int = 1
    problem: Optional[str] = None
    when: float = 0.0


@functools.cache
def heif_support() -> Optional[str]:
    """None when Pillow opens HEIC/HEIF (pillow-heif registered), else why not; registers the opener once."""
    try:
        import pillow_heif
    except ImportError:
        return "HEIC/HEIF photo skipped: pillow-heif is not installed (pip install 'dreammover[heif]')"
    pillow_heif.register_heif_opener()
    return None


def _text(value) -> str:
    return str(value).replace("\x00", "").strip() if value is not None else ""


def camera_name(make: str, model: str) -> str:
    """'Canon' + 'Canon EOS R5' -> 'Canon EOS R5': makers often repeat the make in the model."""
    make, model = _text(make), _text(model)
    if make and model.lower().startswith(make.split()[0].lower()):
        return model
    return " ".join(p for p in (make, model) if p)


def capture_time(exif) -> Optional[datetime]:
    """DateTimeOriginal + SubSecTimeOriginal (+ OffsetTimeOriginal: an aware time); None when absent or invalid."""
    ifd = exif.get_ifd(EXIF_IFD)
    stamp = _text(ifd.get(DATETIME_ORIGINAL))
    try:
        taken = datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S")
    except ValueError:  # absent, blank or '0000:00:00 00:00:00' as some cameras write
        return None
    sub = "".join(c for c in _text(ifd.get(SUBSEC_ORIGINAL)) if c.isdigit())
    if sub:  # '5' is 0.5 s, '050' is 0.05 s: digits of a decimal fraction
        taken += timedelta(seconds=int(sub) / 10 ** len(sub))
    offset = _text(ifd.get(OFFSET_ORIGINAL))
    try:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = offset[1:].split(":")
        taken = taken.replace(tzinfo=timezone(sign * timedelta(hours=int(hours), minutes=int(minutes))))
    except (ValueError, IndexError):
        pass  # no offset: the camera's local time, ordered as if it were UTC
    return taken


def order_seconds(taken: datetime) -> float:
    """Seconds to order photos by: an aware time's UTC instant, a naive (camera-local) time read as UTC."""
    return (taken if taken.tzinfo else taken.replace(tzinfo=timezone.utc)).timestamp()


def open_image(fp, key: str, max_pixels: int):
    """Pillow's lazy open (header only) with the bomb checks as problems: HEIC without a plugin, too many pixels."""
    from PIL import Image, UnidentifiedImageError

    if PurePosixPath(key).suffix.lower() in HEIF_SUFFIXES and heif_support():
        raise PhotoProblem(heif_support())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise PhotoProblem(f"decompression bomb refused: {err}") from err
    except UnidentifiedImageError as err:
        raise PhotoProblem("not an image (no reader recognises its bytes)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise PhotoProblem(f"unreadable image: {err}") from err
    w, h = im.size
    if w * h > max_pixels:
        raise PhotoProblem(f"decompression bomb refused: {w}x{h} is over {max_pixels / 1e6:.0f} megapixels")
    return im


def header_exif(im):
    """The EXIF of a lazily opened image without loading pixels (Pillow's PNG getexif decodes the whole image)."""
    from PIL import Image

    if im.format != "PNG":
        return im.getexif()
    exif = Image.Exif()
    if "exif" in im.info:  # an eXIf chunk before the pixel data; one after it is not seen (file time is used)
        exif.load(im.info["exif"])
    return exif


def read_capture(head: bytes, key: str, size: int, file_time: float, max_pixels: int) -> Photo:
    """A Photo from the first bytes of the file (EXIF lives in the header); PhotoProblem if unusable."""
    if size == 0:
        raise PhotoProblem("empty file (0 bytes)")
    im = open_image(io.BytesIO(head), key, max_pixels)
    with im:
        exif = header_exif(im)
        taken = capture_time(exif)
        orientation = exif.get(ORIENTATION, 1)
        camera = camera_name(exif.get(MAKE), exif.get(MODEL))
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    if taken is None:
        ft = datetime.fromtimestamp(file_time, timezone.utc)
        return Photo(key=key, size=size, taken=ft, time_source="file", camera=camera, orientation=orientation,
                     when=file_time)
    return Photo(key=key, size=size, taken=taken, camera=camera, orientation=orientation, when=order_seconds(taken))


def thumbnail(data: bytes, key: str, size: int, max_pixels: int, mode: str = "RGB") -> np.ndarray:
    """uint8 thumbnail (longest side `size`; mode "RGB" or "L": grey, HxW), upright by EXIF orientation.

    JPEGs decode at 1/2..1/8 scale (draft); "L" also skips the chroma planes' inverse DCT and colour conversion.
    """
    import cv2
    from PIL import ImageOps

    im = open_image(io.BytesIO(data), key, max_pixels)
    try:
        with im:
            im.draft(mode, (size, size))  # JPEG: DCT scaling to the smallest size still >= size; others: no-op
            if header_exif(im).get(ORIENTATION, 1) != 1:
                im = ImageOps.exif_transpose(im)  # loads the (reduced) pixels, turned upright
            pixels = np.asarray(im.convert(mode))
    except (OSError, SyntaxError, ValueError) as err:
        raise PhotoProblem(f"unreadable image: {err}") from err
    h, w = pixels.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return pixels
    # INTER_AREA: a box filter, right for shrinking and several times faster than Pillow's resampling here.
    return cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
