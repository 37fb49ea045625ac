"""Softmax splatting (Eq. 4) and backward warping with hand-computed weights: collisions, borders, dtypes."""
import math

import torch

from dreammover.splatting import backwarp, forward_splat, max_splat, softmax_splat, softmax_splat_with_mask, splat_metric


def _flow(h, w, b=1, **at):
    """Zero flow with (x, y) displacements set per pixel: at={(y, x): (dx, dy)}."""
    f = torch.zeros(b, 2, h, w)
    for (y, x), (dx, dy) in at.get("px", {}).items():
        f[:, 0, y, x], f[:, 1, y, x] = dx, dy
    return f


def _const(h, w, dx, dy, b=1):
    f = torch.zeros(b, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


def test_backwarp_fractional_both_axes_zero_padding_align_corners_true():
    x = torch.tensor([[[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]]])   # h=2, w=4
    right = backwarp(x, _const(2, 4, 0.5, 0))
    # align_corners=True: pixel centres are the sample points; half a pixel past the edge blends with the zero pad
    assert torch.allclose(right, torch.tensor([[[[1.5, 2.5, 3.5, 2.0], [5.5, 6.5, 7.5, 4.0]]]]))
    left = backwarp(x, _const(2, 4, -0.5, 0))
    assert torch.allclose(left[0, 0, 0], torch.tensor([0.5, 1.5, 2.5, 3.5]))
    down = backwarp(x, _const(2, 4, 0, 0.5))
    assert torch.allclose(down[0, 0], torch.tensor([[3.0, 4.0, 5.0, 6.0], [2.5, 3.0, 3.5, 4.0]]))
    both = backwarp(x, _const(2, 4, 0.5, 0.5))
    assert math.isclose(both[0, 0, 1, 3].item(), 0.25 * 8.0, abs_tol=1e-6)
    assert math.isclose(both[0, 0, 0, 0].item(), (1 + 2 + 5 + 6) / 4, abs_tol=1e-6)
    far = backwarp(x, _const(2, 4, 10, 0))
    assert torch.all(far == 0)


def test_backwarp_on_two_pixel_wide_and_high_grids_and_mixed_dtypes():
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]], dtype=torch.float64)
    out = backwarp(x, _const(2, 2, 0.5, 0.25))                       # flows stay float32, latents may not
    assert out.dtype == torch.float64
    top = 0.75 * torch.tensor([2.0, 0.5 * 3]) + 0.25 * torch.tensor([6.0, 0.5 * 7])
    assert torch.allclose(out[0, 0, 0], top.double(), atol=1e-6)
    assert torch.allclose(out[0, 0, 1], 0.75 * torch.tensor([6.0, 3.5]).double(), atol=1e-6)


def test_forward_splat_distributes_bilinearly_in_x_and_y():
    x = torch.zeros(1, 1, 3, 4)
    x[0, 0, 0, 0] = 1.0
    out = forward_splat(x, _flow(3, 4, px={(0, 0): (0.25, 0.5)}))
    expected = torch.zeros(3, 4)
    expected[0, 0], expected[0, 1], expected[1, 0], expected[1, 1] = 0.375, 0.125, 0.375, 0.125
    assert torch.allclose(out[0, 0], expected)


def test_forward_splat_drops_mass_outside_every_border_and_keeps_it_on_the_first_row_and_column():
    x = torch.ones(1, 1, 3, 3)
    # (1,1) moves up-left by 1: lands exactly on (0,0); (0,1) moves up by a quarter: 3/4 stays, 1/4 leaves the frame;
    # (2,2) moves right-down by half: only its own corner (1/4) stays
    flow = _flow(3, 3, px={(1, 1): (-1.0, -1.0), (0, 1): (0.0, -0.25), (2, 2): (0.5, 0.5), (1, 0): (-0.5, 0.0)})
    out = forward_splat(x, flow)[0, 0]
    expected = torch.tensor([[2.0, 0.75, 1.0], [0.5, 0.0, 1.0], [1.0, 1.0, 0.25]])
    assert torch.allclose(out, expected)


def test_forward_splat_keeps_batch_items_apart():
    x = torch.arange(2 * 1 * 1 * 3, dtype=torch.float32).view(2, 1, 1, 3) + 1
    flow = torch.zeros(2, 2, 1, 3)
    flow[1, 0] = 1.0                                             # only item 1 moves right
    out = forward_splat(x, flow)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1, 0, 0], torch.tensor([0.0, 4.0, 5.0]))


def test_forward_splat_half_latents_use_float32_positions():
    # At x ~ 100 a float16 position has a step of 1/16: 100 + 0.3 would become 100.3125.
    w = 128
    x = (2.0 * (-1.0) ** torch.arange(w)).view(1, 1, 1, w).half()   # +2, -2, ...: errors in fx show x4
    flow = torch.full((1, 2, 1, w), 0.3, dtype=torch.float16)
    flow[:, 1] = 0
    out = forward_splat(x, flow)
    assert out.dtype == torch.float16
    ref = forward_splat(x.float(), flow.float())
    assert torch.allclose(out.float(), ref, atol=1e-2)


def test_softmax_splat_three_sources_collide_with_hand_computed_weights():
    # 1 x 5 row, 2 channels. Sources 0 (+2), 2 (0) and 4 (-2) all land on pixel 2; source 1 leaves the frame,
    # source 3 moves by +0.5 and splits between pixels 3 and 4.
    x = torch.tensor([[[1.0, 9.0, 2.0, 5.0, 3.0], [-1.0, 9.0, 0.5, 7.0, 4.0]]]).view(1, 2, 1, 5)
    flow = _flow(1, 5, px={(0, 0): (2.0, 0), (0, 1): (10.0, 0), (0, 3): (0.5, 0), (0, 4): (-2.0, 0)})
    metric = torch.tensor([-1.0, 0.0, -0.5, -0.3, -2.0]).view(1, 1, 1, 5)
    out, mask = softmax_splat_with_mask(x, flow, metric)
    w0, w2, w4, w3 = math.exp(-1.0), math.exp(-0.5), math.exp(-2.0), 0.5 * math.exp(-0.3)
    den = w0 + w2 + w4 + 1e-7
    for c in range(2):
        want = (w0 * x[0, c, 0, 0] + w2 * x[0, c, 0, 2] + w4 * x[0, c, 0, 4]) / den
        assert math.isclose(out[0, c, 0, 2].item(), want.item(), rel_tol=1e-5)
        assert math.isclose(out[0, c, 0, 3].item(), (w3 * x[0, c, 0, 3] / (w3 + 1e-7)).item(), rel_tol=1e-5)
    assert math.isclose(mask[0, 0, 0, 2].item(), (w0 + w2 + w4) / den, rel_tol=1e-6)
    # nothing landed on pixels 0 and 1: zero content, zero coverage
    assert torch.all(out[..., :2] == 0) and torch.all(mask[..., :2] == 0)


def test_softmax_splat_epsilon_matters_where_little_weight_lands():
    x = torch.tensor([[[[2.0, 0.0]]]])
    flow = _flow(1, 2, px={(0, 0): (0.99, 0)})                   # 1 % of source 0 stays at pixel 0
    metric = torch.full((1, 1, 1, 2), -10.0)
    out = softmax_splat(x, flow, metric)
    w = 0.01 * math.exp(-10.0)                                    # 4.5e-7, comparable to the 1e-7 of Eq. 4
    assert math.isclose(out[0, 0, 0, 0].item(), 2.0 * w / (w + 1e-7), rel_tol=1e-3)


def test_splat_metric_by_hand_default_alpha_and_both_clips():
    xa = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])             # [1, 2, 1, 2]
    xb = torch.tensor([[[[1.5, 0.0]], [[1.0, 0.0]]]])
    m = splat_metric(xa, xb, _const(1, 2, 0, 0))
    # E = mean over the 2 channels of |xa - xb| = [0.75, 3]; M = clip(-10 E, -10, 10)
    assert m.shape == (1, 1, 1, 2)
    assert torch.allclose(m, torch.tensor([[[[-7.5, -10.0]]]]))
    assert torch.allclose(splat_metric(xa, xb, _const(1, 2, 0, 0), alpha=2.0), torch.tensor([[[[-1.5, -6.0]]]]))
    assert torch.allclose(splat_metric(xa, xb, _const(1, 2, 0, 0), alpha=-4.0), torch.tensor([[[[3.0, 10.0]]]]))
    # the error is measured against x_b warped back along the flow
    shifted = splat_metric(xa, xb, _const(1, 2, -1.0, 0), alpha=1.0)
    # pixel 1 samples xb at pixel 0: |2 - 1.5| and |4 - 1| -> E = 1.75; pixel 0 samples outside: zeros -> E = 0.5
    assert torch.allclose(shifted, torch.tensor([[[[-0.5, -1.75]]]]))


def test_max_splat_winner_is_largest_exp_metric_times_bilinear_weight():
    # Source 0 lands 60 % on pixel 1 with M = 0 (score 0.6); source 2 lands fully with M = -1 (score 0.37).
    x = torch.tensor([[[[10.0, 20.0, 30.0]]]])
    flow = _flow(1, 3, px={(0, 0): (1.4, 0), (0, 2): (-1.0, 0)})
    metric = torch.tensor([[[[0.0, -50.0, -1.0]]]])
    out, mask = max_splat(x, flow, metric)
    assert out[0, 0, 0, 1] == 10.0 and mask[0, 0, 0, 1] == 1
    # pixel 2 gets 40 % of source 0 (0.4) and nothing else: source 0 wins there too
    assert out[0, 0, 0, 2] == 10.0
    # nothing lands on pixel 0
    assert out[0, 0, 0, 0] == 0 and mask[0, 0, 0, 0] == 0
    # a stronger metric makes source 2 win pixel 1
    out2, _ = max_splat(x, flow, torch.tensor([[[[0.0, -50.0, 0.0]]]]))
    assert out2[0, 0, 0, 1] == 30.0


def test_max_splat_identity_ties_batch_and_dtype():
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64)
    out, mask = max_splat(x, torch.zeros(2, 2, 3, 4), torch.zeros(2, 1, 3, 4, dtype=torch.float64))
    assert torch.equal(out, x) and mask.dtype == torch.float64 and torch.all(mask == 1)
    # two sources with equal scores land on one pixel: the lower source index wins, per batch item
    x = torch.tensor([[[[1.0, 2.0, 3.0]]], [[[4.0, 5.0, 6.0]]]])
    flow = torch.zeros(2, 2, 1, 3)
    flow[0, 0, 0, 0], flow[0, 0, 0, 2] = 1.0, -1.0               # item 0: sources 0 and 2 land on pixel 1 too
    flow[1, 0, 0, 2] = -2.0                                       # item 1: source 2 lands on pixel 0
    metric = torch.zeros(2, 1, 1, 3)
    metric[1, 0, 0, 2] = 1.0                                      # ... and beats source 0 there
    out, mask = max_splat(x, flow, metric)
    assert out[0, 0, 0].tolist() == [0.0, 1.0, 0.0] and mask[0, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert out[1, 0, 0].tolist() == [6.0, 5.0, 0.0] and mask[1, 0, 0].tolist() == [1.0, 1.0, 0.0]
