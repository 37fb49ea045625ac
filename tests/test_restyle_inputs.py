"""Restyle inputs: masks (box, per-frame boxes, image, video), bad-input errors, windows and fitted sizes."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dreammover.restyle import (RestyleConfig, RestyleInputError, check_restyle_inputs, fit_size, latent_mask,
                                mask_from_box, parse_box, plan_windows, read_mask)


def frames(n=3, h=24, w=40):
    return [np.zeros((h, w, 3), np.uint8) for _ in range(n)]


def test_parse_box_and_its_errors():
    assert parse_box("1, 2,30,40") == (1, 2, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4", "-1,2,3,4", "1.5,2,3,4"):
        with pytest.raises(RestyleInputError, match="box"):
            parse_box(bad)


def test_mask_from_box_for_the_clip_and_per_frame():
    m = mask_from_box((2, 1, 3, 2), 2, 5, 8)
    assert m.shape == (2, 5, 8) and m.dtype == np.float32
    assert m[:, 1:3, 2:5].min() == 1 and m.sum() == 2 * 6
    per = mask_from_box([(0, 0, 1, 1), (7, 4, 5, 5)], 2, 5, 8)
    assert per[0, 0, 0] == 1 and per[0].sum() == 1 and per[1, 4, 7] == 1 and per[1].sum() == 1  # clipped
    with pytest.raises(RestyleInputError, match="per frame"):
        mask_from_box([(0, 0, 1, 1)] * 3, 2, 5, 8)
    with pytest.raises(RestyleInputError, match="outside"):
        mask_from_box((9, 0, 1, 1), 2, 5, 8)


def test_read_mask_image_applies_to_all_frames_and_must_match_the_size(tmp_path):
    img = np.zeros((24, 40), np.uint8)
    img[5:10, 20:30] = 255
    cv2.imwrite(str(tmp_path / "m.png"), img)
    m = read_mask(tmp_path / "m.png", 3, 24, 40)
    assert m.shape == (3, 24, 40) and m.max() == 1 and m.min() == 0 and m[:, 5:10, 20:30].min() == 1
    with pytest.raises(RestyleInputError, match="40x24.*the frames 41x24"):
        read_mask(tmp_path / "m.png", 3, 24, 41)
    with pytest.raises(RestyleInputError, match="does not exist"):
        read_mask(tmp_path / "none.png", 3, 24, 40)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(RestyleInputError, match="not a readable image"):
        read_mask(tmp_path / "bad.png", 3, 24, 40)


def test_read_mask_video_is_per_frame(tmp_path):
    from dreammover.video import write_video

    vid = [np.full((32, 48, 3), 255 * (i % 2), np.uint8) for i in range(4)]
    write_video(vid, tmp_path / "m.mp4")
    m = read_mask(tmp_path / "m.mp4", 4, 32, 48)
    assert m.shape == (4, 32, 48)
    assert m[0].mean() < 0.1 and m[1].mean() > 0.9  # per frame, not one image
    with pytest.raises(RestyleInputError, match="4 frames, the clip 5"):
        read_mask(tmp_path / "m.mp4", 5, 32, 48)


def test_latent_mask_is_max_pooled():
    m = np.zeros((2, 16, 16), np.float32)
    m[0, 3, 3] = 1  # one pixel marks its whole latent cell
    lm = latent_mask(m, 2, 2, 2)
    assert lm.shape == (2, 2, 2) and lm[0, 0, 0] == 1 and lm.sum() == 1
    assert latent_mask(m[:1], 3, 2, 2).shape == (3, 2, 2)
    assert latent_mask(None, 2, 2, 2) is None


def test_check_restyle_inputs_errors():
    cfg = RestyleConfig()
    check_restyle_inputs(frames(), "a dog", "a tiger", None, cfg, max_frames=3)
    check_restyle_inputs(frames(), "", "a tiger", np.zeros((24, 40)), cfg)
    for args, match in [
        (([], "a", "b", None), "no frames"),
        ((frames(4), "a", "b", None), "4 frames, more than the limit of 3"),
        ((frames(), "a", "  ", None), "target prompt"),
        ((frames(), "a", "", None), "target prompt"),
        ((frames(), "a", "b", np.zeros((24, 41))), "41x24 but the frames are 40x24"),
        ((frames(), "a", "b", np.zeros((2, 24, 40))), "2 frames but the video has 3"),
        ((frames()[:1] + [np.zeros((5, 5, 3), np.uint8)], "a", "b", None), "differ in size"),
    ]:
        with pytest.raises(RestyleInputError, match=match) as err:
            check_restyle_inputs(*args, cfg, max_frames=3)
        assert "\n" not in str(err.value)


def test_plan_windows_cover_the_clip_with_the_overlap():
    assert plan_windows(10, 16, 4) == [(0, 10)]
    assert plan_windows(16, 16, 4) == [(0, 16)]
    for n, win, ov in [(17, 16, 4), (40, 16, 4), (33, 8, 3), (9, 4, 0)]:
        ws = plan_windows(n, win, ov)
        assert ws[0][0] == 0 and ws[-1][1] == n and all(b - a == win for a, b in ws)
        assert all(a1 < a2 <= b1 and b1 - a2 >= ov for (a1, b1), (a2, _) in zip(ws, ws[1:]))


def test_fit_size_keeps_aspect_and_multiples():
    assert fit_size(320, 576, 64, 576 * 320) == (320, 576)
    h, w = fit_size(1080, 1920, 64, 576 * 320)
    assert h % 64 == 0 and w % 64 == 0 and h * w <= 576 * 320 and abs(w / h - 16 / 9) < 0.2
    assert fit_size(10, 10, 16, 10_000) == (16, 16)
    h, w = fit_size(27, 45, 16, 10_000)
    assert (h, w) == (32, 48)


def test_config_validates_and_fingerprints():
    with pytest.raises(ValueError, match="t_min"):
        RestyleConfig(t_min=500, t_max=400)
    with pytest.raises(ValueError, match="overlap"):
        RestyleConfig(window=4, overlap=4)
    with pytest.raises(ValueError):
        RestyleConfig(stepz=3)
    fp = RestyleConfig().fingerprint()
    assert fp["steps"] == 200 and fp["lr"] == 0.4 and fp["guidance_scale"] == 7.5 and fp["dds_scale"] == 2000
    assert "checkpointing" not in fp  # memory only, same result (tested in test_restyle_method)
    assert RestyleConfig(steps=3).fingerprint() != fp
