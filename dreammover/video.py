"""Step 13: encode frames with ffmpeg (system binary, else the one shipped in imageio-ffmpeg).

mp4 is H.264 yuv420p with +faststart (plays while downloading), webm VP9, gif a two-pass palette.
"""
from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

FORMATS = {
    ".mp4": dict(vcodec="libx264", pix_fmt="yuv420p", crf=18, movflags="+faststart"),
    ".webm": dict(vcodec="libvpx-vp9", pix_fmt="yuv420p", crf=30, **{"b:v": 0}),
    ".gif": dict(vf="split[a][b];[a]palettegen[p];[b][p]paletteuse"),
}


def ffmpeg_exe() -> str:
    """Path of an ffmpeg binary: the system one if present, else imageio-ffmpeg's."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError as err:  # pragma: no cover - dependency is declared
        raise RuntimeError("no ffmpeg found: install ffmpeg or `pip install imageio-ffmpeg`") from err
    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0,
                ffmpeg_args: Sequence[str] = ()) -> Path:
    """Write RGB uint8 frames as .mp4 (H.264 yuv420p), .webm, .gif, or a folder of PNGs (path without suffix).

    ffmpeg_args: extra global ffmpeg options (e.g. ("-loglevel", "debug") to see why an encode fails).
    """
    import ffmpeg

    path = Path(path)
    if not frames:
        raise ValueError("no frames to encode")
    h, w = frames[0].shape[:2]
    if any(f.shape != frames[0].shape for f in frames):
        raise ValueError("all frames must have the same shape")
    if path.suffix == "":
        return write_png_frames(frames, path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported output format {path.suffix!r}: use .mp4, .webm, .gif or a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Never a half-written clip at `path`; unique, so two writers of one clip (threads, containers) never
    # share a temporary file.
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.partial{path.suffix}")
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
    stream = ffmpeg.output(stream, str(tmp), r=fps, **FORMATS[path.suffix.lower()])
    if ffmpeg_args:
        stream = stream.global_args(*ffmpeg_args)
    # Streamed frame by frame: a 3 s 1080x1920 clip is 90 x 6 MB, too much to stack in memory at once.
    proc = ffmpeg.run_async(stream, cmd=ffmpeg_exe(), pipe_stdin=True, pipe_stderr=True, overwrite_output=True,
                            quiet=False)
    # Read stderr while writing: once its pipe buffer (64 KB) is full, ffmpeg stops reading our frames.
    log = _StderrTail(proc.stderr)
    try:
        try:
            for f in frames:
                proc.stdin.write(np.ascontiguousarray(f, dtype=np.uint8).tobytes())
        except BrokenPipeError:
            pass  # ffmpeg died early; its stderr says why
        finally:
            proc.stdin.close()
        code = proc.wait()
        log.join()
        if code != 0:
            raise RuntimeError(f"ffmpeg failed writing {path}: {log.text()[-2000:]}")
        tmp.replace(path)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.join()  # the pipe ends with the process
        tmp.unlink(missing_ok=True)
        raise
    return path


class _StderrTail:
    """Drains a pipe on a thread, keeping its last `keep` bytes (the end of ffmpeg's log says what failed)."""

    def __init__(self, pipe, keep: int = 64 * 1024):
        self._pipe, self._keep, self._data = pipe, keep, bytearray()
        self._thread = threading.Thread(target=self._drain, name="ffmpeg-stderr", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for chunk in iter(lambda: self._pipe.read1(65536), b""):
            self._data += chunk
            del self._data[:-self._keep]

    def join(self) -> None:
        self._thread.join()
        self._pipe.close()

    def text(self) -> str:
        return self._data.decode(errors="replace")


def write_png_frames(frames: Sequence[np.ndarray], folder: str | Path) -> Path:
    import cv2

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    return folder


def read_video(path: str | Path) -> list[np.ndarray]:
    """Decode a clip into RGB uint8 frames (OpenCV; no ffprobe needed)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames
