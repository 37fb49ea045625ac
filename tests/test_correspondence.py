"""Eq. 5 flow from features: known shifts and permutations must come back exactly."""
import numpy as np
import torch

from dreammover.correspondence import estimate_flow, estimate_flow_opencv, estimate_flow_per_pixel, upsample_features


def _unique_features(c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, h, w, generator=g)


def test_permutation_gives_exact_flow_both_directions():
    c, h, w = 32, 6, 7
    f0 = _unique_features(c, h, w)
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(1))
    # f1 at q holds f0 at perm[q]  =>  p = perm[q] matches q: F01(p) = q - p, F10(q) = p - q
    f1 = f0.reshape(c, -1)[:, perm].reshape(c, h, w)
    flow01, flow10 = estimate_flow(f0, f1, chunk_rows=5)
    inv = torch.argsort(perm)
    src = torch.arange(h * w)
    tgt = inv  # where each source pixel p went
    exp01 = torch.stack([(tgt % w - src % w).float(), (tgt // w - src // w).float()]).reshape(2, h, w)
    exp10 = torch.stack([(perm % w - src % w).float(), (perm // w - src // w).float()]).reshape(2, h, w)
    assert torch.equal(flow01, exp01)
    assert torch.equal(flow10, exp10)


def test_pure_translation_flow_is_the_translation():
    c, h, w, dx, dy = 16, 8, 9, 2, 1
    big = _unique_features(c, h + dy, w + dx, seed=3)
    f0 = big[:, :h, :w]
    f1 = big[:, dy:dy + h, dx:dx + w]  # content of f0 at p appears in f1 at p - (dx, dy)
    flow01, flow10 = estimate_flow(f0, f1)
    inner01 = flow01[:, dy:, dx:]
    assert torch.all(inner01[0] == -dx) and torch.all(inner01[1] == -dy)
    assert torch.all(flow10[0, :h - dy, :w - dx] == dx) and torch.all(flow10[1, :h - dy, :w - dx] == dy)


def test_chunking_does_not_change_result_and_matches_per_pixel_loop():
    f0, f1 = _unique_features(8, 5, 5, 4), _unique_features(8, 5, 5, 5)
    a = estimate_flow(f0, f1, chunk_rows=3)
    b = estimate_flow(f0, f1, chunk_rows=10_000)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], estimate_flow_per_pixel(f0, f1))
    assert torch.equal(a[1], estimate_flow_per_pixel(f1, f0))


def test_feature_scale_does_not_matter_cosine():
    f0, f1 = _unique_features(8, 4, 4, 6), _unique_features(8, 4, 4, 7)
    a = estimate_flow(f0, f1)
    b = estimate_flow(f0 * 7.0, f1 * 0.01)
    assert torch.equal(a[0], b[0])


def test_upsample_features_to_latent_size():
    f = torch.randn(1, 3, 2, 2)
    up = upsample_features(f, (8, 8))
    assert up.shape == (1, 3, 8, 8)
    assert torch.allclose(up.mean(dim=(2, 3)), f.mean(dim=(2, 3)), atol=1e-5)


def test_opencv_flow_of_translation_recovers_shift_at_latent_scale():
    rng = np.random.default_rng(0)
    import cv2
    tex = cv2.GaussianBlur((rng.random((160, 160)) * 255).astype(np.uint8), (0, 0), 2)
    img = np.stack([tex] * 3, -1)
    im0, im1 = img[16:144, 16:144], img[16:144, 8:136]  # content moves +8 px in x
    f01, f10 = estimate_flow_opencv(np.ascontiguousarray(im0), np.ascontiguousarray(im1), (16, 16))
    # 8 px at 128 px equals 1 latent pixel at 16 px
    assert abs(f01[0, 4:12, 4:12].median().item() - 1.0) < 0.15
    assert abs(f10[0, 4:12, 4:12].median().item() + 1.0) < 0.15
    assert f01[1, 4:12, 4:12].abs().median().item() < 0.15
