"""Two-level fusion by hand (DESIGN §3 steps 7-9): Eq. 7 cases, the ones channel, WTA select/splat, Eq. 8."""
import math

import pytest
import torch

import dreammover.fusion as fusion
from dreammover.fusion import fuse_direct, fuse_high_level, fuse_low_level_wta, fuse_low_level_wta_splat, recombine
from dreammover.splatting import splat_metric


def _row_flow(dx_per_px, h=1):
    """[2, h, w] flow with the given x displacement per pixel (same for every row), zero y."""
    dx = torch.as_tensor(dx_per_px, dtype=torch.float32)
    f = torch.zeros(2, h, dx.numel())
    f[0] = dx
    return f


def _two_channels(values):
    """[1, 2, 1, w] latent whose two channels both hold `values` (so means over channels are easy by hand)."""
    v = torch.as_tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    return torch.cat([v, v], dim=1)


# ---- Eq. 7 ---------------------------------------------------------------------------------------------

def test_eq7_both_covered_blends_one_covered_takes_it_none_takes_unwarped_blend():
    # Row 0: z1 is z0 moved 4 px right (+0.05); F01 = +4, F10 = -4. At delta 0.25, s0 is z0 moved +1 (covers x=1..7)
    # and s1 is z1 moved -3 (covers x=0..4). Row 1: both flows leave the frame, nothing is covered.
    g = torch.Generator().manual_seed(0)
    z0 = 0.3 * torch.rand(1, 2, 2, 8, generator=g)
    z1 = 0.3 * torch.rand(1, 2, 2, 8, generator=g)
    z1[..., 0, 4:] = z0[..., 0, :4] + 0.05
    f01, f10 = torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)
    f01[0, 0], f10[0, 0] = 4.0, -4.0
    f01[0, 1], f10[0, 1] = 100.0, -100.0
    out = fuse_high_level(z0, z1, f01, f10, [0.25])[0]
    for x in range(1, 5):   # both cover: (1-d) s0 + d s1 = z0(x-1) + 0.25 * 0.05
        assert torch.allclose(out[:, 0, x], z0[0, :, 0, x - 1] + 0.0125, atol=1e-4), x
    assert torch.allclose(out[:, 0, 0], z1[0, :, 0, 3], atol=1e-4)             # only s1 (source x=3 of z1)
    for x in range(5, 8):   # only s0
        assert torch.allclose(out[:, 0, x], z0[0, :, 0, x - 1], atol=1e-4), x
    assert torch.allclose(out[:, 1], (0.75 * z0 + 0.25 * z1)[0, :, 1], atol=1e-6)   # none: unwarped blend


def test_eq7_formula_with_fractional_masks_teacher_forced(monkeypatch):
    """Replace the splatting by given (s, m) and check the Eq. 7 arithmetic and what is splatted with which flow."""
    z0 = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    z1 = torch.tensor([-1.0, 0.5, 7.0, 2.0]).view(1, 1, 1, 4)
    f01, f10 = _row_flow([1.0, 2.0, 0.0, -1.0]), _row_flow([0.0, -1.0, -2.0, -3.0])
    given = [(torch.tensor([10.0, 20.0, 30.0, 40.0]), torch.tensor([0.6, 1.0, 0.0, 0.3])),
             (torch.tensor([-5.0, -6.0, -7.0, -8.0]), torch.tensor([0.3, 0.0, 1.0, 0.9]))]
    calls = []

    def fake_splat(x, flow, metric):
        calls.append((x.clone(), flow.clone(), metric.clone()))
        s, m = given[len(calls) - 1]
        return s.view(1, 1, 1, 4).expand_as(x).clone(), m.view(1, 1, 1, 4).expand(x.shape[0], 1, 1, 4).clone()

    monkeypatch.setattr(fusion, "softmax_splat_with_mask", fake_splat)
    d = 0.25
    out = fuse_high_level(z0, z1, f01, f10, [d], alpha=3.0)[0, 0, 0]
    (s0, m0), (s1, m1) = given
    b = m0 * m1
    u = (1 - d) * z0.view(4) + d * z1.view(4)
    want = (((1 - d) * s0 + d * s1) * b + s1 * (m1 - b).clamp(min=0) + s0 * (m0 - b).clamp(min=0)
            + u * (1 - (m0 + m1).clamp(max=1)))
    # pixel 3: m0 + m1 = 1.2 > 1, so the unwarped blend gets no weight there
    assert torch.allclose(out, want)
    assert math.isclose(out[3].item(), (0.75 * 40 - 0.25 * 8) * 0.27 + (-8) * 0.63 + 40 * 0.03, rel_tol=1e-6)
    # z0 is splatted by delta F01, z1 by (1 - delta) F10, each weighted by its own metric on [z, 1] (alpha passed on)
    (x0, fl0, me0), (x1, fl1, me1) = calls
    assert torch.equal(x0, z0) and torch.equal(x1, z1)
    assert torch.allclose(fl0, d * f01[None]) and torch.allclose(fl1, (1 - d) * f10[None])
    ones = torch.ones(1, 1, 1, 4)
    a0, a1 = torch.cat([z0, ones], 1), torch.cat([z1, ones], 1)
    assert torch.allclose(me0, splat_metric(a0, a1, f01[None], 3.0))
    assert torch.allclose(me1, splat_metric(a1, a0, f10[None], 3.0))


@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("alpha", [None, 3.0])
def test_collision_weights_use_the_ones_channel_in_the_error(side, alpha):
    # Sources 0 (+2), 2 (-2) and 3 (-4) of one image land on pixel 1 at delta 0.5; source 3's backward sample (-1)
    # is outside the frame, so its ones channel contributes |1 - 0| to E = mean over the C+1 = 3 channels.
    a = [0.1, 0.5, 0.3, 0.2]
    b = [0.25, 0.9, 0.4, 0.6]
    za, zb = _two_channels(a), _two_channels(b)
    fa, fb = _row_flow([2.0, 6.0, -2.0, -4.0]), _row_flow([6.0, 6.0, 6.0, 6.0])   # the other image lands elsewhere
    kw = {} if alpha is None else {"alpha": alpha}
    if side == 0:
        out = fuse_high_level(za, zb, fa, fb, [0.5], **kw)
    else:
        out = fuse_high_level(zb, za, fb, fa, [0.5], **kw)
    al = 10.0 if alpha is None else alpha
    err = {0: (2 * abs(a[0] - b[2]) + 0) / 3, 2: (2 * abs(a[2] - b[0]) + 0) / 3, 3: (2 * abs(a[3]) + 1) / 3}
    w = {p: math.exp(max(-al * e, -10.0)) for p, e in err.items()}
    total = sum(w.values())
    s = sum(w[p] * a[p] for p in w) / (total + 1e-7)
    m = total / (total + 1e-7)
    unwarped = 0.5 * (a[1] + b[1])
    want = s * m + unwarped * (1 - m)   # only this image covers pixel 1: its splat, plus the blend where it falls short
    assert math.isclose(out[0, 0, 0, 1].item(), want, rel_tol=1e-5)
    assert math.isclose(out[0, 1, 0, 1].item(), want, rel_tol=1e-5)


def test_fuse_direct_is_eq7_on_the_noisy_latents_with_alpha():
    za, zb = _two_channels([0.1, 0.5, 0.3, 0.2]), _two_channels([0.25, 0.9, 0.4, 0.6])
    fa, fb = _row_flow([2.0, 6.0, -2.0, -4.0]), _row_flow([6.0, 6.0, 6.0, 6.0])
    for alpha in (10.0, 3.0):
        assert torch.equal(fuse_direct(za, zb, fa, fb, [0.5, 0.2], alpha), fuse_high_level(za, zb, fa, fb, [0.5, 0.2], alpha))
    assert not torch.allclose(fuse_direct(za, zb, fa, fb, [0.5], 3.0), fuse_direct(za, zb, fa, fb, [0.5]))
    assert torch.equal(fuse_direct(za, zb, fa, fb, [0.5]), fuse_high_level(za, zb, fa, fb, [0.5], 10.0))


# ---- low-level WTA, `select` ------------------------------------------------------------------------------

WTA_Z0 = [0.00, 0.05, 0.10, 0.50, 0.90]
WTA_Z1 = [0.02, 0.30, 0.10, 0.00, -0.90]
WTA_F01 = [1.0, 0.0, -2.0, 0.0, 0.0]
WTA_F10 = [0.0, 2.0, 0.0, -3.0, 0.0]


@pytest.mark.parametrize("delta, picks", [
    # E0 = |z0 - z1(p + F01)| = [.30, .25, .08, .50, 1.8]; E1 = |z1 - z0(p + F10)| = [.02, .20, 0, 0, 1.8]
    # c0 = clip(.3 - E0, .001, 1)(1 - d) = [.001, .05, .22, .001, .001](1 - d); c1 = [.28, .10, .30, .30, .001] d
    (0.25, [1, 0, 0, 1, 0]),
    (0.40, [1, 1, 0, 1, 0]),
    (0.50, [1, 1, 1, 1, 0]),    # last pixel: both clamp to .001 -> tie -> image 0
    (0.60, [1, 1, 1, 1, 1]),
])
def test_wta_select_by_hand(delta, picks):
    z0, z1 = _two_channels(WTA_Z0), _two_channels(WTA_Z1)
    out = fuse_low_level_wta(z0, z1, _row_flow(WTA_F01), _row_flow(WTA_F10), [delta])
    want = torch.where(torch.tensor(picks, dtype=torch.bool).view(1, 1, 1, -1), z1, z0)
    assert torch.equal(out, want)


def test_wta_select_follows_the_low_error_region_and_keeps_unit_variance():
    # Top half: z1 is z0 moved 2 px right and F01 says so (E0 = 0, c0 = 0.3 (1-d)); F10 is wrong everywhere
    # (E1 ~ 1.1, c1 clamps to 0.001 d). Bottom half: independent noise, both clamp, the time weight decides.
    g = torch.Generator().manual_seed(0)
    h = w = 32
    z0, z1 = torch.randn(1, 4, h, w, generator=g), torch.randn(1, 4, h, w, generator=g)
    z1[..., : h // 2, :] = torch.roll(z0, 2, dims=3)[..., : h // 2, :]
    f01 = torch.zeros(2, h, w)
    f01[0, : h // 2] = 2.0
    out = fuse_low_level_wta(z0, z1, f01, torch.zeros(2, h, w), [0.7])[0]
    assert torch.equal(out[:, : h // 2, : w - 2], z0[0, :, : h // 2, : w - 2])   # low error wins against delta 0.7
    assert torch.equal(out[:, h // 2:], z1[0, :, h // 2:])                    # clamped: delta 0.7 picks image 1
    assert abs(out.var().item() - 1.0) < 0.05
    blend = 0.3 * z0 + 0.7 * z1
    assert blend[..., h // 2:, :].var().item() < 0.7                      # what averaging would have given


# ---- low-level WTA, `splat` -------------------------------------------------------------------------------

def _eps_rows(w=8):
    e0 = torch.arange(1.0, 2 * w + 1).view(1, 1, 2, w)
    return e0, -e0


def test_wta_splat_covered_by_one_by_both_and_by_none():
    e0, e1 = _eps_rows()
    z = torch.zeros(1, 1, 2, 8)
    f01, f10 = torch.zeros(2, 2, 8), torch.zeros(2, 2, 8)
    f01[0, 0], f10[0, 0] = 4.0, -4.0          # row 0 moves; row 1 leaves the frame
    f01[0, 1], f10[0, 1] = 100.0, -100.0
    out = fuse_low_level_wta_splat(e0, e1, z, z, f01, f10, [0.25, 0.75])
    # delta 0.25: eps0 moves +1 (covers 1..7), eps1 moves -3 (covers 0..4); image 0 has the larger time weight
    assert out[0, 0, 0, 1:].tolist() == e0[0, 0, 0, :7].tolist()
    assert out[0, 0, 0, 0].item() == e1[0, 0, 0, 3].item()
    # delta 0.75: eps0 moves +3 (covers 3..7), eps1 moves -1 (covers 0..6); image 1 has the larger time weight
    assert out[1, 0, 0, :7].tolist() == e1[0, 0, 0, 1:].tolist()
    assert out[1, 0, 0, 7].item() == e0[0, 0, 0, 4].item()
    # nothing lands in row 1: the unwarped noise of the side with the larger time weight
    assert torch.equal(out[0, 0, 1], e0[0, 0, 1]) and torch.equal(out[1, 0, 1], e1[0, 0, 1])


@pytest.mark.parametrize("side", [0, 1])
def test_wta_splat_collision_winner_depends_on_metric_and_alpha(side):
    # Source 0 lands fully on pixel 1 (E = 0.1); source 3 lands half on pixel 1 (E = 0.034, 0.5 bilinear weight).
    # Score exp(-alpha E) * w: alpha 10 -> 0.368 vs 0.356, source 0 wins; alpha 30 -> 0.050 vs 0.180, source 3 wins.
    e = torch.tensor([11.0, 12.0, 13.0, 14.0]).view(1, 1, 1, 4)
    other = -e
    za, zb = torch.tensor([0.1, 0.0, 0.0, 0.034]).view(1, 1, 1, 4), torch.zeros(1, 1, 1, 4)
    fa, away = _row_flow([2.0, 100.0, 100.0, -3.0]), _row_flow([100.0] * 4)
    if side == 0:
        run = lambda **kw: fuse_low_level_wta_splat(e, other, za, zb, fa, away, [0.5], **kw)  # noqa: E731
    else:
        run = lambda **kw: fuse_low_level_wta_splat(other, e, zb, za, away, fa, [0.5], **kw)  # noqa: E731
    assert run()[0, 0, 0, 1].item() == 11.0
    assert run(alpha=30.0)[0, 0, 0, 1].item() == 14.0
    assert run(alpha=30.0)[0, 0, 0, 2].item() == 14.0     # the other half of source 3, alone there


# ---- Eq. 8 ------------------------------------------------------------------------------------------------

def test_recombine_by_hand():
    x0, eps = torch.tensor([2.0, -1.0]), torch.tensor([3.0, 0.5])
    assert torch.allclose(recombine(x0, eps, 0.36), torch.tensor([0.6 * 2 + 0.8 * 3, 0.6 * -1 + 0.8 * 0.5]))
    assert torch.equal(recombine(x0, eps, 1.0), x0)
