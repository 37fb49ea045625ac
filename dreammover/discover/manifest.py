"""Write what discovery found: the manifest run-archive reads as it is, its side report, and a contact sheet."""
from __future__ import annotations

import json
from pathlib import PurePosixPath

import cv2
import numpy as np

from .config import DiscoverConfig
from .photos import PhotoProblem
from .run import DiscoverResult
from .source import PhotoSource

SHEET_ROW_PX = 120       # thumbnail height on the contact sheet
SHEET_MAX_ENTRIES = 200  # a sheet is for review: beyond this many entries it says how many were left off


def report_uri(manifest: str) -> str:
    """'<dir>/manifest.json' -> '<dir>/manifest.report.json' (works for paths and s3:// URIs)."""
    parent, _, name = str(manifest).rpartition("/")
    stem = PurePosixPath(name).stem
    return f"{parent}/{stem}.report.json" if parent else f"{stem}.report.json"


def write_manifest(result: DiscoverResult, path_or_uri: str) -> tuple[str, str]:
    """Write {"source", "pairs"} at `path_or_uri` and the side report (rejected + photos_report) beside it."""
    from dreammover_tasks.storage import write_uri

    manifest = {"source": result.source, "pairs": result.pairs}
    report = {"source": result.source, "photos_read": result.photos, "bursts": len(result.bursts),
              "pairs": len(result.pairs), "rejected": result.rejected, "photos": result.photos_report}
    side = report_uri(path_or_uri)
    write_uri(str(path_or_uri), (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode())
    write_uri(side, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode())
    return str(path_or_uri), side


def _row(source: PhotoSource, entry: dict, cfg: DiscoverConfig) -> np.ndarray:
    """One sheet row: the entry's thumbnails side by side (BGR), its id and score written over them."""
    keys = entry.get("keyframes") or [entry["image0"], entry["image1"]]
    cells = []
    for key in keys:
        try:
            rgb = source.thumbnail(key, cfg.thumb_size)
        except PhotoProblem:
            rgb = np.zeros((SHEET_ROW_PX, SHEET_ROW_PX * 4 // 3, 3), np.uint8)
        w = max(1, round(rgb.shape[1] * SHEET_ROW_PX / rgb.shape[0]))
        cells.append(cv2.cvtColor(cv2.resize(rgb, (w, SHEET_ROW_PX), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
        cells.append(np.full((SHEET_ROW_PX, 4, 3), 255, np.uint8))
    row = np.hstack(cells[:-1])
    scores = entry.get("scores") or [entry.get("score", 0.0)]
    text = f"{entry['id']}  score {' '.join(f'{s:.2f}' for s in scores)}"
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    band = np.full((18, max(row.shape[1], tw + 8), 3), 255, np.uint8)  # a white band: readable on any photo
    cv2.putText(band, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    row = np.pad(row, ((0, 0), (0, band.shape[1] - row.shape[1]), (0, 0)), constant_values=255)
    row = np.vstack([row, band])
    return row


def contact_sheet(result: DiscoverResult, path_or_uri: str, config: DiscoverConfig | None = None) -> int:
    """A JPEG grid (one row per chosen entry, thumbnails re-read one entry at a time); returns the rows drawn."""
    from dreammover_tasks.storage import write_uri

    cfg = config or DiscoverConfig()
    source = PhotoSource(result.source, cfg.max_pixels, cfg.head_bytes)
    rows = [_row(source, e, cfg) for e in result.pairs[:SHEET_MAX_ENTRIES]]
    left = len(result.pairs) - len(rows)
    if left > 0 or not rows:
        note = np.full((40, 640, 3), 255, np.uint8)
        cv2.putText(note, f"{left} more entries not shown" if rows else "no pairs found", (8, 26),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(note)
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    ok, jpeg = cv2.imencode(".jpg", sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    write_uri(str(path_or_uri), jpeg.tobytes())
    return len(rows) - (1 if left > 0 or not result.pairs else 0)
