"""Synthetic photo archives with EXIF, as cameras and phones leave them (shared by the discovery tests and bench).

A *scene* is a large random canvas (textured background, shapes with corners for features); a photo is a
view of it: a crop at a camera offset (a pan) with a textured subject pasted at some position. Photos of one
scene with different offsets show the same scene with motion; another seed is a scene cut; the same view
with a little sensor noise is a near-duplicate. EXIF (DateTimeOriginal, SubSecTimeOriginal,
OffsetTimeOriginal, Make, Model, Orientation) is written by Pillow, or spliced into ready JPEG bytes
(`with_exif`) so a bench can give one encoded photo many capture times without encoding it again.
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXIF_IFD, DATETIME_ORIGINAL, SUBSEC_ORIGINAL, OFFSET_ORIGINAL = 0x8769, 0x9003, 0x9291, 0x9011
MAKE, MODEL, ORIENTATION = 0x010F, 0x0110, 0x0112


def scene(seed: int, size: tuple[int, int]) -> np.ndarray:
    """An RGB canvas `size` (w, h) of smooth noise plus random rectangles, circles and lines (corners for ORB)."""
    w, h = size
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    for _ in range(w * h // 900):
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(3, max(4, min(w, h) // 14)))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.rectangle(base, (x, y), (x + r, y + int(rng.integers(3, r + 4))), color, -1)
        elif kind == 1:
            cv2.circle(base, (x, y), r // 2 + 1, color, -1)
        else:
            cv2.line(base, (x, y), (x + int(rng.integers(-r, r)), y + int(rng.integers(-r, r))), color, 2)
    return base


def subject(seed: int, radius: int) -> np.ndarray:
    """A round checkered subject with a random tint (RGBA: alpha marks the disc)."""
    d = 2 * radius
    yy, xx = np.mgrid[0:d, 0:d]
    tint = np.random.default_rng(seed).integers(60, 255, 3)
    checker = (((xx // max(2, radius // 4)) + (yy // max(2, radius // 4))) % 2)[..., None]
    rgb = np.where(checker, tint, 255 - tint).astype(np.uint8)
    alpha = (((xx - radius + 0.5) ** 2 + (yy - radius + 0.5) ** 2) < radius ** 2).astype(np.uint8) * 255
    return np.dstack([rgb, alpha])


def view(canvas: np.ndarray, offset: tuple[int, int], size: tuple[int, int],
         thing: np.ndarray | None = None, at: tuple[int, int] = (0, 0), noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """The crop of `canvas` at `offset` (the camera), `thing` pasted at `at` (view coordinates), optional noise."""
    w, h = size
    x, y = offset
    img = canvas[y:y + h, x:x + w].copy()
    if thing is not None:
        th, tw = thing.shape[:2]
        ax, ay = at
        x0, y0, x1, y1 = max(ax, 0), max(ay, 0), min(ax + tw, w), min(ay + th, h)
        if x1 > x0 and y1 > y0:
            part = thing[y0 - ay:y1 - ay, x0 - ax:x1 - ax]
            a = part[..., 3:4].astype(np.float32) / 255
            img[y0:y1, x0:x1] = (part[..., :3] * a + img[y0:y1, x0:x1] * (1 - a)).astype(np.uint8)
    if noise:
        jitter = np.random.default_rng(seed).normal(0, noise, img.shape)
        img = np.clip(img + jitter, 0, 255).astype(np.uint8)
    return img


def exif_bytes(taken: datetime | None, make: str = "", model: str = "", orientation: int = 1,
               offset: str | None = None) -> bytes:
    """The EXIF block Pillow writes for these capture data (DateTimeOriginal + SubSec + OffsetTime)."""
    ex = Image.Exif()
    if make:
        ex[MAKE] = make
    if model:
        ex[MODEL] = model
    if orientation != 1:
        ex[ORIENTATION] = orientation
    if taken is not None:
        ifd = ex.get_ifd(EXIF_IFD)
        ifd[DATETIME_ORIGINAL] = taken.strftime("%Y:%m:%d %H:%M:%S")
        ifd[SUBSEC_ORIGINAL] = f"{taken.microsecond // 1000:03d}"
        if offset:
            ifd[OFFSET_ORIGINAL] = offset
    return ex.tobytes()


def to_stored(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for an upright view `rgb` tagged with `orientation` (1, 3, 6 or 8)."""
    # Orientation 6: shown after a 90° clockwise turn, so stored turned 90° counter-clockwise (8: the reverse).
    turns = {1: 0, 3: 2, 6: 1, 8: 3}[orientation]
    return np.ascontiguousarray(np.rot90(rgb, turns))


def write_photo(path: Path, rgb: np.ndarray, taken: datetime | None = None, make: str = "", model: str = "",
                orientation: int = 1, offset: str | None = None, quality: int = 90,
                mtime: datetime | None = None) -> Path:
    """Write an upright view as a JPEG with EXIF (none when `taken` and the camera are all unset)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(to_stored(rgb, orientation))
    extra = {}
    if taken is not None or make or model or orientation != 1:
        extra["exif"] = exif_bytes(taken, make, model, orientation, offset)
    im.save(path, "JPEG", quality=quality, **extra)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """`jpeg` (no EXIF of its own) with an APP1 EXIF segment right after SOI: no re-encoding."""
    assert jpeg[:2] == b"\xff\xd8"
    payload = b"Exif\x00\x00" + exif
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose header claims width × height pixels (a decompression bomb to a reader)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


@dataclass
class Archive:
    """What a generated archive holds and what discovery should make of it (keys relative to its root)."""

    root: Path
    pairs: set[tuple[str, str]] = field(default_factory=set)        # the pairs a correct discovery chooses
    rejected: dict[tuple[str, str], str] = field(default_factory=dict)  # candidate -> reason keyword
    no_exif: set[str] = field(default_factory=set)
    bursts: list[list[str]] = field(default_factory=list)          # multi-photo bursts, in time order
    bad: dict[str, str] = field(default_factory=dict)              # key -> reason keyword


T0 = datetime(2024, 5, 1, 10, 15, 2)


def make_archive(root: Path, size: tuple[int, int] = (320, 240), bad_inputs: bool = False) -> Archive:
    """The test archive: every case of issue #18 (see the comments), photos `size` (w, h)."""
    w, h = size
    arc = Archive(root)
    big = (2 * w, 2 * h)
    step = w // 8  # a pan of 1/8 of the width per photo: clear motion, most of the view shared
    ball = subject(1, h // 8)

    def shot(name, seed, off, at, taken, make="Canon", model="EOS R5", orientation=1, noise=1.5, **kw):
        rgb = view(scene(seed, big), off, size, ball, at, noise=noise, seed=zlib.crc32(name.encode()))
        write_photo(root / name, rgb, taken, make, model, orientation, **kw)
        return name

    # 1. A burst of three with the camera panning and the subject moving far; names out of time order.
    a = [shot("DCIM/IMG_0300.JPG", 10, (0, 0), (20, h // 2), T0, offset="+02:00"),
         shot("DCIM/IMG_0100.JPG", 10, (step, 8), (w // 3, h // 3), T0 + timedelta(seconds=0.5), offset="+02:00"),
         shot("DCIM/IMG_0200.JPG", 10, (2 * step, 16), (2 * w // 3, h // 4), T0 + timedelta(seconds=1.4),
              offset="+02:00")]
    arc.bursts.append(a)
    arc.pairs |= {(a[0], a[1]), (a[1], a[2])}
    # 2. Another camera at the same moment, another scene; one photo stored turned (orientation 6).
    n = [shot("nikon/DSC_0001.jpg", 20, (10, 10), (w // 2, h // 2), T0 + timedelta(seconds=0.2), "NIKON", "Z 6"),
         shot("nikon/DSC_0002.jpg", 20, (10 + step, 20), (w // 5, h // 3), T0 + timedelta(seconds=1.0), "NIKON", "Z 6",
              orientation=6)]
    arc.bursts.append(n)
    arc.pairs.add((n[0], n[1]))
    # 3. Singles hours apart (same camera as the burst).
    shot("DCIM/IMG_0400.JPG", 30, (0, 0), (0, 0), T0 + timedelta(hours=2))
    shot("DCIM/IMG_0500.JPG", 31, (0, 0), (0, 0), T0 + timedelta(hours=5))
    # 4. A scene cut two seconds apart: a candidate that verification must reject.
    c = [shot("DCIM/IMG_0600.JPG", 40, (0, 0), (w // 2, h // 2), T0 + timedelta(hours=6)),
         shot("DCIM/IMG_0601.JPG", 41, (0, 0), (w // 2, h // 2), T0 + timedelta(hours=6, seconds=2))]
    arc.bursts.append(c)
    arc.rejected[(c[0], c[1])] = "scene cut"
    # 5. A near-duplicate with no motion, then a real move: the duplicate is skipped, the move pairs with the first.
    s = [shot("sony/A7_0001.jpg", 50, (step, step), (w // 2, h // 2), T0 + timedelta(hours=7), "SONY", "ILCE-7M3"),
         shot("sony/A7_0002.jpg", 50, (step, step), (w // 2, h // 2), T0 + timedelta(hours=7, seconds=1), "SONY",
              "ILCE-7M3"),
         shot("sony/A7_0003.jpg", 50, (2 * step, step + 10), (w // 4, h // 3), T0 + timedelta(hours=7, seconds=2),
              "SONY", "ILCE-7M3")]
    arc.bursts.append(s)
    arc.rejected[(s[0], s[1])] = "near-duplicate"
    arc.pairs.add((s[0], s[2]))
    # 6. Photos without EXIF: file times one second apart make a burst; one more a day later is a single.
    m0 = datetime(2024, 5, 2, 9, 0, 0)
    e = [shot("scans/b.jpg", 60, (0, 0), (w // 3, h // 2), None, "", "", mtime=m0),
         shot("scans/a.jpg", 60, (step, 12), (w // 2, h // 3), None, "", "", mtime=m0 + timedelta(seconds=1))]
    shot("scans/c.jpg", 61, (0, 0), (0, 0), None, "", "", mtime=m0 + timedelta(days=1))
    arc.bursts.append(e)
    arc.pairs.add((e[0], e[1]))
    arc.no_exif = {"scans/a.jpg", "scans/b.jpg", "scans/c.jpg"}
    if bad_inputs:
        (root / "bad").mkdir(parents=True, exist_ok=True)
        (root / "bad" / "empty.jpg").write_bytes(b"")
        (root / "bad" / "notes.jpg").write_text("not a photo at all\n")
        (root / "bad" / "bomb.png").write_bytes(bomb_png())
        good = (root / a[0]).read_bytes()
        (root / "bad" / "truncated.jpg").write_bytes(good[:200])
        arc.bad = {"bad/empty.jpg": "empty", "bad/notes.jpg": "not an image", "bad/bomb.png": "decompression bomb",
                   "bad/truncated.jpg": "unreadable"}
    return arc
