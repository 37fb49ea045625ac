"""Metric properties: WE (Lai et al. 2018), WE_mid, the Fig. 5 high-frequency ratio, LPIPS and FID plumbing."""
from __future__ import annotations

import numpy as np
import pytest

from dreammover.evaluation.metrics import (
    high_frequency_energy, high_frequency_ratio, middle_indices, non_occlusion_mask, warping_error, we_mid,
)


def _texture(h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    """Smooth random texture: trackable by DIS (pure noise is not), still rich in detail."""
    import cv2

    rng = np.random.default_rng(seed)
    big = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_CUBIC)


def _translating_clip(n: int = 6, step: int = 2, size: int = 96) -> list[np.ndarray]:
    """Crops of one larger texture moving `step` pixels right per frame: pure translation, no occlusion inside."""
    canvas = _texture(size + 40, size + 40 + n * step, seed=1)
    return [np.ascontiguousarray(canvas[20:20 + size, 20 + i * step:20 + i * step + size]) for i in range(n)]


def test_we_of_static_clip_is_zero():
    img = _texture()
    assert warping_error([img] * 5) == pytest.approx(0.0, abs=1e-9)


def test_we_of_translation_is_near_zero_and_shuffle_is_not():
    clip = _translating_clip()
    we = warping_error(clip)
    rng = np.random.default_rng(0)
    shuffled = [_texture(seed=s) for s in rng.integers(0, 1000, len(clip))]
    we_bad = warping_error(shuffled)
    assert we < 0.05, we              # a few grey levels of bilinear resampling at most
    assert we_bad > 20 * max(we, 1e-3), (we, we_bad)


def test_we_scale_is_linear_parameter():
    clip = _translating_clip()
    rng = np.random.default_rng(3)
    noisy = [np.clip(f.astype(int) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8) for f in clip]
    assert warping_error(noisy, scale=1.0) * 100 == pytest.approx(warping_error(noisy, scale=100.0), rel=1e-9)


def test_occlusion_mask_flags_inconsistent_flow():
    import torch

    fwd = torch.zeros(1, 2, 16, 16)
    fwd[:, 0] = 2.0
    consistent = non_occlusion_mask(fwd, -fwd)
    inconsistent = non_occlusion_mask(fwd, fwd)   # going back along +2 again lands 4 px away
    assert consistent[..., :, :13].min() == 1 and consistent[..., :, 14:].max() == 0  # leaves the frame -> masked
    assert inconsistent.sum() == 0


def test_we_mid_zero_when_middle_frames_are_the_inputs():
    a, b = _texture(seed=4), _texture(seed=5)
    other = _texture(seed=6)
    assert middle_indices(6) == (2, 3)
    clip = [a, other, a, b, other, b]                 # middle frames (2, 3) equal I0 and I1
    assert we_mid(clip, a, b) == pytest.approx(0.0, abs=1e-9)
    assert we_mid([a, other, other, other, other, b], a, b) > 1.0


def test_middle_indices_odd_clip_uses_centre_frame():
    assert middle_indices(33) == (16, 16)
    with pytest.raises(ValueError):
        middle_indices(2)


def test_high_frequency_ratio_self_and_blurred():
    import cv2

    img = _texture(128, 128, seed=7)
    assert high_frequency_ratio(img, img) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(img, (0, 0), 2.0)
    assert high_frequency_ratio(blurred, img) < 0.8
    assert high_frequency_energy(np.full((32, 32, 3), 90, np.uint8)) == pytest.approx(0.0, abs=1e-6)


def _lpips_or_skip():
    from dreammover.evaluation.perceptual import WeightsUnavailable, load_lpips

    try:
        return load_lpips()                       # real weights when the machine has them cached
    except WeightsUnavailable:
        return load_lpips("random")                # otherwise a seeded random trunk tests the plumbing


def test_lpips_identity_zero_and_positive_otherwise():
    lp = _lpips_or_skip()
    a, b = _texture(64, 64, seed=8), _texture(64, 64, seed=9)
    assert lp(a, a) == pytest.approx(0.0, abs=1e-6)
    assert lp(a, b) > 1e-3
    assert lp(a, b) == pytest.approx(lp(b, a), rel=1e-5)


def test_fid_identical_sets_zero_and_different_sets_positive():
    from dreammover.evaluation.perceptual import WeightsUnavailable, frechet_distance, load_fid

    try:
        feats = load_fid()
    except WeightsUnavailable:
        feats = load_fid("random")
    xs = [_texture(64, 64, seed=s) for s in range(4)]
    ys = [np.full((64, 64, 3), v, np.uint8) for v in (10, 80, 150, 220)]
    fx, fy = feats(xs), feats(ys)
    assert fx.shape == (4, 2048)
    assert abs(frechet_distance(fx, fx)) < 1e-4 * max(1.0, float(np.trace(np.cov(fx, rowvar=False))))
    assert frechet_distance(fx, fy) > 1e-3


def test_frechet_distance_matches_gaussian_closed_form():
    from dreammover.evaluation.perceptual import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (4000, 2))
    b = rng.normal(0, 1, (4000, 2)) * 2 + 3       # mean shift 3 in 2 dims, std 2
    # |mu|^2 = 18; tr = 2 + 8 - 2 * 2 * 2 = 2  -> 20
    assert frechet_distance(a, b) == pytest.approx(20.0, rel=0.05)


def test_missing_weights_explain_where_they_were_looked_for(tmp_path, monkeypatch):
    from dreammover.evaluation.perceptual import WeightsUnavailable, load_fid, load_lpips

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailable, match="--lpips-weights"):
        load_lpips()
    with pytest.raises(WeightsUnavailable, match="--fid-weights"):
        load_fid()


def test_lpips_loads_a_cached_torchvision_style_checkpoint(tmp_path, monkeypatch):
    import torch

    from dreammover.evaluation.backbones import LPIPSTrunk
    from dreammover.evaluation.perceptual import load_lpips

    torch.manual_seed(1)
    state = LPIPSTrunk("alex").state_dict()
    state["classifier.1.weight"] = torch.zeros(4, 4)        # extra keys of a full classifier are ignored
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "alexnet-owt-test.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    lp = load_lpips()
    assert "baseline" in lp.name or lp.name == "lpips-alex"
    assert torch.equal(lp.trunk.features[0].weight, state["features.0.weight"])
    del state["features.10.bias"]
    torch.save(state, ckpt / "alexnet-owt-test.pth")
    with pytest.raises(ValueError, match="lacks"):
        load_lpips()
