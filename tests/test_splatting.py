"""Softmax splatting (Eq. 4) and backward warping: properties that fail if the arithmetic is wrong."""
import torch

from dreammover.splatting import backwarp, forward_splat, max_splat, softmax_splat, softmax_splat_with_mask, splat_metric


def _flow(dx, dy, h, w, b=1):
    f = torch.zeros(b, 2, h, w)
    f[:, 0], f[:, 1] = dx, dy
    return f


def test_zero_flow_is_identity():
    x = torch.randn(2, 3, 6, 7)
    out, mask = softmax_splat_with_mask(x, _flow(0, 0, 6, 7, 2), torch.zeros(2, 1, 6, 7))
    assert torch.allclose(out, x, atol=1e-5)
    assert torch.allclose(mask, torch.ones_like(mask), atol=1e-5)


def test_integer_shift_moves_content_exactly_and_marks_coverage():
    x = torch.randn(1, 4, 5, 6)
    out, mask = softmax_splat_with_mask(x, _flow(2, 1, 5, 6), torch.zeros(1, 1, 5, 6))
    assert torch.allclose(out[..., 1:, 2:], x[..., :-1, :-2], atol=1e-5)
    assert torch.all(mask[..., 1:, 2:] > 0.999)
    # Nothing lands in the first row / first two columns: zero content and zero coverage.
    assert torch.all(mask[..., :1, :] == 0) and torch.all(mask[..., :, :2] == 0)
    assert torch.all(out[..., :1, :] == 0)


def test_lower_error_source_wins_more_weight():
    # Two sources land on the same target; the one with the larger metric (lower error) dominates.
    x = torch.zeros(1, 1, 1, 3)
    x[0, 0, 0, 0], x[0, 0, 0, 2] = 1.0, -1.0
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0, 0, 0], flow[0, 0, 0, 2] = 1.0, -1.0  # both onto pixel 1
    metric = torch.zeros(1, 1, 1, 3)
    metric[0, 0, 0, 0], metric[0, 0, 0, 2] = 0.0, -3.0
    out = softmax_splat(x, flow, metric)
    w0, w2 = 1.0, torch.exp(torch.tensor(-3.0)).item()
    expected = (w0 * 1.0 + w2 * -1.0 + torch.exp(torch.tensor(0.0)).item() * 0.0) / (w0 + w2 + 1.0)
    # pixel 1 also splats onto itself with zero flow (metric 0, value 0)
    assert abs(out[0, 0, 0, 1].item() - expected) < 1e-5
    assert out[0, 0, 0, 1] > 0  # the low-error source (value +1) wins


def test_fractional_shift_splits_bilinearly():
    x = torch.ones(1, 1, 1, 4)
    f = _flow(0.25, 0, 1, 4)
    s = forward_splat(x, f)
    # pixel 0 keeps 0.75 of its own mass; the last pixel's 0.25 falls off the edge
    assert torch.allclose(s, torch.tensor([[[[0.75, 1.0, 1.0, 1.0]]]]))


def test_backwarp_integer_flow_samples_neighbour_with_zero_padding():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    out = backwarp(x, _flow(1, 0, 3, 4))
    assert torch.allclose(out[..., :3], x[..., 1:])
    assert torch.all(out[..., 3] == 0)


def test_splat_metric_is_zero_error_for_consistent_pair_and_clipped():
    a = torch.randn(1, 3, 4, 4)
    b = torch.roll(a, shifts=1, dims=3)
    m = splat_metric(a, b, _flow(1, 0, 4, 4), alpha=10.0)
    assert torch.allclose(m[..., :3], torch.zeros_like(m[..., :3]), atol=1e-5)
    big = splat_metric(a, a + 100, _flow(0, 0, 4, 4))
    assert torch.all(big == -10.0)


def test_max_splat_takes_winner_not_mean():
    x = torch.tensor([[[[1.0, 5.0, -2.0]]]])
    flow = torch.zeros(1, 2, 1, 3)
    flow[0, 0, 0, 0], flow[0, 0, 0, 2] = 1.0, -1.0
    metric = torch.tensor([[[[0.0, -5.0, -1.0]]]])
    out, mask = max_splat(x, flow, metric)
    assert out[0, 0, 0, 1] == 1.0  # source 0 has the largest exp(M) among the three landing on pixel 1
    assert mask[0, 0, 0, 1] == 1 and mask[0, 0, 0, 0] == 0 and mask[0, 0, 0, 2] == 0
    assert out[0, 0, 0, 0] == 0


def test_max_splat_preserves_values_exactly_under_shift():
    x = torch.randn(1, 2, 4, 4)
    out, mask = max_splat(x, _flow(1, 0, 4, 4), torch.zeros(1, 1, 4, 4))
    assert torch.equal(out[..., 1:], x[..., :-1])
    assert torch.all(mask[..., 0] == 0)
