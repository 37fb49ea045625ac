"""Step 13: ffmpeg encoding to MP4/WebM/GIF/PNG frames; no half-written clip on failure."""
import numpy as np
import pytest

from dreammover.video import read_video, write_video


def _frames(n=5, h=64, w=96):
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, i * 10:(i * 10) + 20] = (255, 128, 0)
        out.append(f)
    return out


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_formats_decode_to_same_frame_count_and_size(tmp_path, suffix):
    path = write_video(_frames(), tmp_path / f"clip{suffix}", fps=10)
    frames = read_video(path)
    assert len(frames) == 5 and frames[0].shape == (64, 96, 3)
    # the bright bar moves right frame by frame
    cols = [int(np.argmax(f[..., 0].mean(axis=0) > 128)) for f in frames]
    assert cols == sorted(cols) and cols[-1] > cols[0]


def test_png_folder(tmp_path):
    folder = write_video(_frames(3), tmp_path / "frames")
    assert sorted(p.name for p in folder.iterdir()) == ["0000.png", "0001.png", "0002.png"]


def test_failure_leaves_no_partial_file(tmp_path):
    with pytest.raises(ValueError):
        write_video(_frames()[:1] + [np.zeros((10, 10, 3), np.uint8)], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="unsupported output format"):
        write_video(_frames(), tmp_path / "x.avi")
    assert list(tmp_path.iterdir()) == []
