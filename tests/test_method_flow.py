"""Eq. 5 flow (DESIGN §3 step 5): argmax of cosine similarity, ties, upsampling, and the classical ablation."""
import numpy as np
import pytest
import torch

from dreammover.correspondence import estimate_flow, estimate_flow_opencv, estimate_flow_per_pixel, upsample_features


def _onehot_features(h, w, c=None):
    """Pixel p of image 0 gets basis vector e_p: similarities are then set entry by entry."""
    c = c or h * w
    return torch.eye(c)[:, : h * w].reshape(c, h, w)


def test_translation_with_vertical_and_horizontal_parts_on_a_non_square_grid():
    h, w, dx, dy = 3, 5, 2, 1
    f0 = torch.randn(8, h, w, generator=torch.Generator().manual_seed(0))
    f1 = torch.zeros_like(f0)
    f1[:, dy:, dx:] = f0[:, : h - dy, : w - dx]  # f0's content at p appears at p + (dx, dy) in image 1
    f1[:, :dy, :] = f1[:, :, :dx] = 0
    flow01, _ = estimate_flow(f0, f1)
    assert flow01.shape == (2, h, w)
    assert torch.all(flow01[0, : h - dy, : w - dx] == dx) and torch.all(flow01[1, : h - dy, : w - dx] == dy)


def test_argmax_of_cosine_not_of_dot_product_nor_argmin():
    # f0 = [1, 0] at its single pixel; image 1 has a long vector at 45 degrees and a short exactly aligned one.
    f0 = torch.tensor([[[1.0]], [[0.0]]])            # [C=2, 1, 1]
    f1 = torch.tensor([[[10.0, 0.5, -3.0]], [[10.0, 0.0, 0.0]]])   # [C=2, 1, 3]
    f0 = f0.expand(2, 1, 3).clone()
    f0[:, 0, 1] = torch.tensor([0.0, 1.0])          # pixel 1 of image 0 points along y
    f0[:, 0, 2] = torch.tensor([-1.0, 0.0])         # pixel 2 along -x
    flow01, flow10 = estimate_flow(f0, f1)
    # p0 = x-axis: best cosine is q1 (aligned, short), not q0 (largest dot product); p1 = y: q0; p2 = -x: q2
    assert flow01[0, 0].tolist() == [1.0, -1.0, 0.0] and flow01[1].abs().sum() == 0
    # image 1 -> 0: q0 (45 deg) ties between p0 and p1 -> the first index wins; q1 -> p0; q2 -> p2
    assert flow10[0, 0].tolist() == [0.0, -1.0, 0.0]


def test_ties_pick_the_first_pixel_whatever_the_chunking():
    # Four identical source pixels: every column of the similarity matrix has a 4-way tie.
    c, h, w = 6, 2, 3
    f0 = torch.randn(c, h, w, generator=torch.Generator().manual_seed(2))
    f0[:, 1, :] = f0[:, 0, 0:1]
    f0[:, 0, 1] = f0[:, 0, 0]
    f1 = f0.flip(-1).clone()
    ref01, ref10 = estimate_flow(f0, f1, chunk_rows=10_000)
    for rows in (1, 2, 5):
        a, b = estimate_flow(f0, f1, chunk_rows=rows)
        assert torch.equal(a, ref01) and torch.equal(b, ref10), rows
    assert torch.equal(ref10, estimate_flow_per_pixel(f1, f0))
    assert torch.equal(ref01, estimate_flow_per_pixel(f0, f1))
    # f1 = f0 mirrored: every target holding the tied vector points at the first of its copies, p = (0, 0)
    grid = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(h), indexing="xy")).float()
    target = ref10 + grid                               # (x, y) of the matched source pixel
    expected = torch.zeros(2, h, w)
    expected[:, 0, 0] = torch.tensor([2.0, 0.0])        # f1(0,0) = f0(0,2), the one unique pixel
    assert torch.equal(target, expected)


def test_column_argmax_keeps_the_best_across_chunks():
    # image 0's pixels: a weak match for every target in chunk 1, the exact match in chunk 2
    h, w = 2, 2
    f1 = _onehot_features(h, w)                      # q has e_q
    f0 = torch.zeros(4, h, w)
    f0[:, 0, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0])   # p0: cos 0.5 with every q
    f0[:, 0, 1] = torch.tensor([0.0, 0.0, 0.0, 1.0])   # p1: exact for q3
    f0[:, 1, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])   # p2: exact for q1
    f0[:, 1, 1] = torch.tensor([1.0, 0.0, 0.0, 0.0])   # p3: exact for q0
    for rows in (1, 2, 3, 4):
        _, flow10 = estimate_flow(f0, f1, chunk_rows=rows)
        # q0 -> p3, q1 -> p2, q2 -> p0 (nothing better), q3 -> p1; flow = p - q as (x, y)
        assert flow10[:, 0, 0].tolist() == [1.0, 1.0], rows
        assert flow10[:, 0, 1].tolist() == [-1.0, 1.0], rows
        assert flow10[:, 1, 0].tolist() == [0.0, -1.0], rows
        assert flow10[:, 1, 1].tolist() == [0.0, -1.0], rows


def test_upsample_is_bilinear_half_pixel_aligned_and_float32():
    f = torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float16)
    up = upsample_features(f, (1, 4))
    assert up.dtype == torch.float32
    # align_corners=False: output x=i samples input at (i + 0.5)/2 - 0.5, clamped at the border
    assert torch.allclose(up[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))
    up2 = upsample_features(torch.tensor([[[[0.0], [1.0]]]]), (4, 2))
    assert torch.allclose(up2[0, 0, :, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def _texture(seed=0, size=200):
    import cv2

    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur((rng.random((size, size)) * 255).astype(np.uint8), (0, 0), 4)  # smooth enough for Farneback
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX)
    return np.stack([tex] * 3, -1)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_opencv_flow_scales_each_axis_to_the_latent_grid(method):
    img = _texture()
    # 128 wide x 64 high; content moves +8 px in x and +4 px in y; latent grid 16 wide x 4 high
    im0, im1 = img[24:88, 24:152], img[20:84, 16:144]
    f01, f10 = estimate_flow_opencv(np.ascontiguousarray(im0), np.ascontiguousarray(im1), (4, 16), method)
    assert f01.shape == f10.shape == (2, 4, 16)
    inner = (slice(1, 3), slice(4, 12))
    # x: 8 px of 128 -> 1 latent px of 16; y: 4 px of 64 -> 0.25 latent px of 4
    assert abs(f01[0][inner].median().item() - 1.0) < 0.05
    assert abs(f01[1][inner].median().item() - 0.25) < 0.02
    assert abs(f10[0][inner].median().item() + 1.0) < 0.05
    assert abs(f10[1][inner].median().item() + 0.25) < 0.02


def test_opencv_flow_rejects_unknown_method():
    img = np.ascontiguousarray(_texture()[:32, :32])
    with pytest.raises(ValueError, match="dis"):
        estimate_flow_opencv(img, img, (4, 4), "raft")
