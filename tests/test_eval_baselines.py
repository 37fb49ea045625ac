"""Baselines (crossfade, classic flow + softmax splatting) and the Table-3 ablation switches."""
from __future__ import annotations

import numpy as np
import pytest

from dreammover import InterpolationConfig
from dreammover.evaluation.baselines import ABLATIONS, ClassicFlow, Crossfade, ablation_config, make_method


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.resize(rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)


@pytest.mark.parametrize("method", [Crossfade(), ClassicFlow()], ids=["crossfade", "classic"])
def test_baseline_frames_and_endpoints(method):
    a, b = _texture(64, 64, 1), _texture(64, 64, 2)
    cfg = InterpolationConfig(size=64, num_frames=3)
    res = method.interpolate(a, b, cfg)
    assert len(res.frames) == cfg.num_frames + 2
    assert np.array_equal(res.frames[0], a) and np.array_equal(res.frames[-1], b)
    assert all(f.shape == a.shape and f.dtype == np.uint8 for f in res.frames)
    assert res.deltas == cfg.deltas and res.seconds


def test_crossfade_is_the_linear_blend():
    a, b = np.zeros((64, 64, 3), np.uint8), np.full((64, 64, 3), 200, np.uint8)
    res = Crossfade().interpolate(a, b, InterpolationConfig(size=64, num_frames=3))
    assert [int(f[0, 0, 0]) for f in res.frames] == [0, 50, 100, 150, 200]


def test_classic_follows_motion_where_crossfade_ghosts():
    # I1 is I0 shifted 6 px right; the true middle frame is the 3 px shift.
    canvas = _texture(64, 128, seed=3)
    crop = lambda dx: np.ascontiguousarray(canvas[:, 20 + dx:20 + dx + 64])  # noqa: E731
    a, b, truth = crop(0), crop(-6), crop(-3)
    cfg = InterpolationConfig(size=64, num_frames=1)
    err = lambda f: float(np.abs(f[8:-8, 8:-8].astype(float) - truth[8:-8, 8:-8]).mean())  # noqa: E731
    classic = ClassicFlow().interpolate(a, b, cfg).frames[1]
    blend = Crossfade().interpolate(a, b, cfg).frames[1]
    assert err(classic) < 0.5 * err(blend), (err(classic), err(blend))


def test_ablation_switches_match_table3():
    base = InterpolationConfig(size=64)
    assert ablation_config(base, None) is base
    assert ablation_config(base, "opencv_flow").flow == "dis"
    assert ablation_config(base, "direct_fusion").fusion == "direct"
    assert ablation_config(base, "no_ref_attention").reference_attention is False
    assert ablation_config(base, "no_lora").lora is False
    changed = {k for a in ABLATIONS for k in ABLATIONS[a]}
    assert changed == {"flow", "fusion", "reference_attention", "lora"}
    with pytest.raises(ValueError):
        ablation_config(base, "no_such_thing")


def test_make_method_needs_a_model_for_dreammover():
    assert isinstance(make_method("crossfade"), Crossfade)
    assert isinstance(make_method("classic"), ClassicFlow)
    with pytest.raises(ValueError, match="needs a model"):
        make_method("dreammover")
    with pytest.raises(ValueError, match="unknown method"):
        make_method("film")
