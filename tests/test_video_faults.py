"""write_video under faults: a chatty ffmpeg (>64 KB of stderr), writers racing on one clip, a failed encode."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dreammover.video import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]


def _frames(n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_chatty_ffmpeg_does_not_deadlock(tmp_path):
    """-debug_ts logs ~1.6 KB per frame: 300 frames give ~0.5 MB of stderr while frames are still written.

    Read only at the end, the stderr pipe fills at 64 KB, ffmpeg stops reading frames and the writer
    blocks forever: run in a child process so that a hang is a timeout here, not a stuck test run.
    """
    out = tmp_path / "chatty.mp4"
    code = (f"import numpy as np; from dreammover.video import write_video\n"
            f"rng = np.random.default_rng(0)\n"
            f"frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(300)]\n"
            f"write_video(frames, {str(out)!r}, fps=25, ffmpeg_args=('-loglevel', 'debug', '-debug_ts'))\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("write_video hung with a chatty ffmpeg (stderr not drained while writing frames)")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert len(read_video(out)) == 300
    assert [p.name for p in tmp_path.iterdir()] == ["chatty.mp4"]


def test_writers_racing_on_one_clip_all_succeed(tmp_path):
    """Four threads write the same clip at once, three times over (a retried encode beside its original)."""
    out, frames, errors = tmp_path / "clip.mp4", _frames(6), []

    def write() -> None:
        try:
            write_video(frames, out, fps=10)
        except Exception as err:  # collected: the assertion names every failure
            errors.append(repr(err))

    for _ in range(3):
        threads = [threading.Thread(target=write) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(read_video(out)) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


def test_a_failed_encode_says_why_and_leaves_nothing(tmp_path):
    out = tmp_path / "bad.mp4"
    with pytest.raises(RuntimeError, match="ffmpeg failed writing .*bad.mp4") as err:
        write_video(_frames(3), out, ffmpeg_args=("-no-such-option-here",))
    assert "Unrecognized option 'no-such-option-here'" in str(err.value)  # the end of ffmpeg's own log
    assert list(tmp_path.iterdir()) == []
