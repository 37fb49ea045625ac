"""Two-level fusion: Eq. 7 cases, WTA variance (supp. A), Eq. 8 recombination."""
import torch

from dreammover.ddim import predict_x0
from dreammover.fusion import fuse_high_level, fuse_low_level_wta, fuse_low_level_wta_splat, recombine

ZERO = torch.zeros(2, 6, 6)


def test_high_level_zero_flow_is_time_blend():
    # Similar latents keep the splat metric high, so the 1e-7 of Eq. 4 leaves the masks at ~1.
    z0 = torch.randn(1, 4, 6, 6)
    z1 = z0 + 0.05 * torch.randn(1, 4, 6, 6)
    out = fuse_high_level(z0, z1, ZERO, ZERO, [0.25, 0.5, 0.75])
    for i, d in enumerate([0.25, 0.5, 0.75]):
        assert torch.allclose(out[i], ((1 - d) * z0 + d * z1)[0], atol=1e-5)


def test_high_level_follows_motion():
    # z1 is z0 shifted by 2 px right; at delta=0.5 the content sits 1 px right of z0.
    z0 = torch.randn(1, 4, 6, 8)
    z1 = torch.roll(z0, 2, dims=3)
    f01 = torch.zeros(2, 6, 8); f01[0] = 2
    f10 = torch.zeros(2, 6, 8); f10[0] = -2
    out = fuse_high_level(z0, z1, f01, f10, [0.5])
    assert torch.allclose(out[0, :, :, 2:7], torch.roll(z0, 1, dims=3)[0, :, :, 2:7], atol=1e-4)


def test_high_level_uncovered_pixels_get_unwarped_blend():
    z0, z1 = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    far = torch.zeros(2, 4, 4); far[0] = 100  # everything leaves the frame: nothing covered
    out = fuse_high_level(z0, z1, far, -far, [0.3])
    assert torch.allclose(out[0], (0.7 * z0 + 0.3 * z1)[0], atol=1e-5)


def test_wta_keeps_unit_variance_where_averaging_shrinks_it():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(1, 4, 64, 64, generator=g), torch.randn(1, 4, 64, 64, generator=g)
    d = 0.5
    avg = (1 - d) * z0 + d * z1
    wta = fuse_low_level_wta(z0, z1, ZERO.new_zeros(2, 64, 64), ZERO.new_zeros(2, 64, 64), [d])
    assert abs(avg.var().item() - ((1 - d) ** 2 + d ** 2)) < 0.03  # 0.5: averaging shrinks it
    assert abs(wta.var().item() - 1.0) < 0.03
    # every value comes from one of the two sources, never a mix
    assert torch.all((wta == z0) | (wta == z1))


def test_wta_select_ties_pick_image0_and_time_weight_decides():
    z = torch.randn(1, 4, 4, 4)
    flows = torch.zeros(2, 4, 4)
    out = fuse_low_level_wta(z, z + 1.0, flows, flows, [0.5, 0.9])
    # equal errors and delta 0.5 -> tie -> image 0; delta 0.9 -> image 1 has the larger confidence
    assert torch.equal(out[0], z[0])
    assert torch.equal(out[1], (z + 1.0)[0])


def test_wta_splat_mode_moves_noise_with_flow_and_keeps_variance():
    g = torch.Generator().manual_seed(1)
    e0, e1 = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 4, 32, 32, generator=g)
    zT0 = torch.randn(1, 4, 32, 32, generator=g)
    zT1 = torch.roll(zT0, 2, dims=3)
    f01 = torch.zeros(2, 32, 32); f01[0] = 2
    f10 = torch.zeros(2, 32, 32); f10[0] = -2
    out = fuse_low_level_wta_splat(e0, e1, zT0, zT1, f01, f10, [0.5])
    # delta 0.5: image 0's noise (time-weight tie -> image 0) moved by 1 px where it lands
    assert torch.equal(out[0, :, :, 1:], e0[0, :, :, :-1])
    assert abs(out.var().item() - 1.0) < 0.1


def test_recombine_then_x0_prediction_returns_fused_latent():
    x0, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    abar = 0.37
    zt = recombine(x0, eps, abar)
    assert torch.allclose(predict_x0(zt, eps, abar), x0, atol=1e-5)
