"""Clip presets: aspect by crop/pad, timing curves, holds, boomerang, duration/fps, Lanczos size, formats."""
import numpy as np
import pytest

from dreammover.presets import PRESETS, ClipPreset, build_clip, get_preset, render_clip, retime, timeline
from dreammover.video import read_video


def _ramp(n=6, h=64, w=96, step=20):
    """Frame i is flat grey level step*i (distinct, easy to identify after retiming)."""
    return [np.full((h, w, 3), step * i, np.uint8) for i in range(n)]


def test_reel_is_1080x1920_and_plays(tmp_path):
    reel = PRESETS["reel"]
    clip = build_clip(_ramp(), reel)
    assert len(clip) == 90 and all(f.shape == (1920, 1080, 3) for f in clip)  # 3 s at 30 fps
    short = reel.model_copy(update={"duration": None, "hold": 0})  # same size, fewer frames: fast encode
    path = render_clip(_ramp(4), short, tmp_path / "reel.anything")
    assert path.suffix == ".mp4"
    frames = read_video(path)
    assert len(frames) == 4 and frames[0].shape == (1920, 1080, 3)


def test_boomerang_reuses_frames_and_has_2n_plus_3_frames():
    frames = _ramp(6)  # N = 4 in-betweens + 2 endpoints
    clip = timeline(frames, ClipPreset(loop="boomerang"))
    assert len(clip) == 2 * (4 + 2) - 1 == ClipPreset(loop="boomerang").frame_count(6)
    assert all(a is b for a, b in zip(clip, frames + frames[-2::-1]))  # the same arrays, nothing recomputed


def test_holds_and_duration():
    p = ClipPreset(hold=3, fps=10, duration=2.0)
    clip = timeline(_ramp(), p)
    assert len(clip) == 20 == p.frame_count(6)
    assert all(f is clip[0] for f in clip[:4]) and all(f is clip[-1] for f in clip[-4:])
    boom = ClipPreset(loop="boomerang", fps=10, duration=2.0)
    assert len(timeline(_ramp(), boom)) in (19, 20)


def test_curves_remap_generated_frames():
    frames = _ramp(11)
    level = lambda clip: [int(f[0, 0, 0]) // 20 for f in clip]  # noqa: E731
    lin = level(retime(frames, 21, "linear"))
    ease = level(retime(frames, 21, "ease-in-out"))
    assert lin[0] == ease[0] == 0 and lin[-1] == ease[-1] == 10
    assert ease == sorted(ease) and ease != lin
    assert ease[2] < lin[2] and ease[10] == lin[10] == 5  # slow start, same midpoint (symmetric curve)
    assert level(retime(frames, 21, "ease-in"))[5] < lin[5] < level(retime(frames, 21, "ease-out"))[5]
    # blend: between two generated frames the output is the linear mix, not a copy of either
    mid = retime(_ramp(2, step=40), 3, "linear", "blend")[1]
    assert int(mid[0, 0, 0]) == 20


def test_crop_follows_focus_and_pad_keeps_everything():
    f = np.zeros((64, 128, 3), np.uint8)
    f[:, 112:] = 255  # a white strip at the right edge
    right = build_clip([f], ClipPreset(aspect="1:1", focus=(1.0, 0.5)))[0]
    centre = build_clip([f], ClipPreset(aspect="1:1"))[0]
    assert right.shape == centre.shape == (64, 64, 3)
    assert right[:, -8:].mean() > 200 and centre.max() == 0
    pad = build_clip([f], ClipPreset(aspect="9:16", fit="pad", pad="solid", pad_color=(0, 0, 255)))[0]
    assert pad.shape[1] == 128 and pad.shape[0] > 200  # width kept, height grown to 9:16
    assert (pad[0, 0] == (0, 0, 255)).all() and pad[pad.shape[0] // 2, -4].mean() > 200
    blur = build_clip([f], ClipPreset(aspect="16:9", fit="pad", width=320, height=180))[0]
    assert blur.shape == (180, 320, 3) and blur[:8, -40:].max() > 0  # blurred fill above, not a black bar


@pytest.mark.parametrize("fmt,suffix,count", [("gif", ".gif", 5), ("webm", ".webm", 5), ("png", "", 5)])
def test_formats(tmp_path, fmt, suffix, count):
    out = render_clip(_ramp(5), ClipPreset(format=fmt, width=64, height=48), tmp_path / "c.mp4")
    assert out.suffix == suffix
    n = len(list(out.iterdir())) if fmt == "png" else len(read_video(out))
    assert n == count


def test_bad_presets_are_clear():
    with pytest.raises(ValueError, match="unknown preset 'tiktok'"):
        get_preset("tiktok")
    with pytest.raises(ValueError, match="even"):
        ClipPreset(width=101, height=100)
    assert get_preset("reel", fps=24).fps == 24 and PRESETS["reel"].fps == 30
