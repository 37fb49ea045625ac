"""DreamMotion's properties (spec ../shared/papers/dreammotion.md) on the tiny text-to-video model and on stubs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreammover.restyle import (RestyleConfig, forward_noise, masked_dds_gradient, restyle,
                                self_similarity, spatial_ssm_loss, temporal_similarity, temporal_ssm_loss)
from dreammover.restyle.edit import optimise
from dreammover.restyle.method import encode_clip, to_tensor
from restyle_stubs import StubModel, clip, t2v  # noqa: F401 - t2v is a fixture


def latents(t2v, frames):
    return encode_clip(t2v.vae, to_tensor(frames, t2v.device), t2v.vae_scale)


def test_same_prompt_dds_and_ssm_are_zero_and_latents_never_move(t2v):
    z_src = latents(t2v, clip())
    z, losses = optimise(t2v, z_src, "a dog", "a dog", None, RestyleConfig(steps=3))
    assert torch.equal(z, z_src)
    assert all(r["dds"] == 0 and r["ssm_s"] == 0 and r["ssm_t"] == 0 for r in losses)
    assert len({r["t"] for r in losses}) > 1  # different timesteps were tried, none moved z


def test_same_prompt_output_is_the_vae_round_trip_whatever_the_steps(t2v):
    frames = clip()
    outs = [restyle(t2v, frames, "a dog", "a dog", config=RestyleConfig(steps=s)).frames for s in (0, 2)]
    assert all(np.array_equal(a, b) for a, b in zip(*outs))
    other = restyle(t2v, frames, "a dog", "an oil painting of a dog", config=RestyleConfig(steps=2)).frames
    assert any(not np.array_equal(a, b) for a, b in zip(outs[0], other))


def test_zero_mask_dds_moves_nothing(t2v):
    g = masked_dds_gradient(torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3), torch.zeros(2, 3, 3), 2000.0)
    assert torch.count_nonzero(g) == 0
    z_src = latents(t2v, clip())
    cfg = RestyleConfig(steps=2, spatial_ssm=False, temporal_ssm=False)
    z, _ = optimise(t2v, z_src, "a dog", "a tiger", torch.zeros(4, 4, 4), cfg)
    assert torch.equal(z, z_src)
    z_free, _ = optimise(t2v, z_src, "a dog", "a tiger", None, cfg)
    assert not torch.equal(z_free, z_src)


def test_mask_limits_dds_to_its_cells():
    e1, e2 = torch.randn(1, 4, 2, 3, 3), torch.randn(1, 4, 2, 3, 3)
    m = torch.zeros(2, 3, 3)
    m[1, 0, 2] = 1
    g = masked_dds_gradient(e1, e2, m, 9.0)
    assert torch.allclose(g[:, :, 1, 0, 2], (e1 - e2)[:, :, 1, 0, 2])  # 9 / (3·3) = 1
    assert torch.count_nonzero(g) == torch.count_nonzero(g[:, :, 1, 0, 2])


def test_self_similarity_is_invariant_to_key_scaling_and_zero_for_identical_keys():
    k = torch.randn(3, 10, 8)
    scaled = k * torch.rand(3, 10, 1).add(0.1) * 50  # every key vector scaled by its own positive factor
    assert torch.allclose(self_similarity(k), self_similarity(scaled), atol=1e-5)
    assert spatial_ssm_loss([scaled], [k]) < 1e-10
    assert spatial_ssm_loss([k], [k]) == 0 and temporal_ssm_loss([k], [k]) == 0
    assert spatial_ssm_loss([torch.randn(3, 10, 8)], [k]) > 1e-3


def test_temporal_self_similarity_of_identical_frames_is_all_ones():
    k = torch.randn(1, 10, 8).expand(5, 10, 8)
    assert torch.allclose(temporal_similarity(k), torch.ones(5, 5), atol=1e-6)


def test_only_latents_change_parameters_are_bit_identical(t2v):
    before = {n: p.detach().clone() for m in (t2v.unet, t2v.vae, t2v.text_encoder) for n, p in m.named_parameters()}
    restyle(t2v, clip(), "a dog", "a tiger", config=RestyleConfig(steps=2))
    after = {n: p for m in (t2v.unet, t2v.vae, t2v.text_encoder) for n, p in m.named_parameters()}
    assert all(torch.equal(before[n], after[n]) and after[n].grad is None for n in before)
    assert not any(p.requires_grad for p in t2v.unet.parameters())
    assert all(type(p).__name__ != "KeyCaptureProcessor" for p in t2v.unet.attn_processors.values())


def test_one_iteration_on_a_stub_equals_the_hand_computed_update():
    """ε = s(prompt)·x and keys = latent tokens: DDS and SSM gradients in closed form (autograd on the formula)."""
    model = StubModel({"": 0.5, "src": 1.0, "tgt": 3.0})
    cfg = RestyleConfig(steps=1, t_min=400, t_max=401, guidance_scale=2.0, lr=0.3, dds_scale=6.0,
                        lambda_s=5.0, lambda_t=7.0, seed=3)
    z_src = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    z0 = z_src + 0.3 * torch.randn(z_src.shape, generator=torch.Generator().manual_seed(2))
    mask = torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 2, 2)

    z_new, _ = optimise(model, z_src, "src", "tgt", mask, cfg, start=z0)  # a z that has already moved

    gen = torch.Generator().manual_seed(cfg.seed)
    t = int(torch.randint(cfg.t_min, cfg.t_max, (1,), generator=gen))
    eps = torch.randn(z0.shape, generator=gen)
    a = model.alphas_cumprod[t]
    z = z0.clone().requires_grad_(True)
    z_t = a.sqrt() * z + (1 - a).sqrt() * eps
    zs_t = a.sqrt() * z_src + (1 - a).sqrt() * eps
    w, (su, ss, st) = cfg.guidance_scale, (0.5, 1.0, 3.0)
    g_dds = ((su + w * (st - su)) * z_t - (su + w * (ss - su)) * zs_t).detach() * mask * (6.0 / 4)

    def tokens(x):  # (1, C, F, h, w) -> (F, hw, C)
        return x[0].permute(1, 2, 3, 0).reshape(3, 4, 4)

    def cos(v):
        v = v / v.norm(dim=-1, keepdim=True)
        return v @ v.transpose(-1, -2)

    l_s = ((cos(tokens(z_t)) - cos(tokens(zs_t))) ** 2).mean()
    l_t = ((cos(tokens(z_t).mean(1)) - cos(tokens(zs_t).mean(1))) ** 2).mean()
    (g_ssm,) = torch.autograd.grad(5.0 * l_s + 7.0 * l_t, z)
    expected = z0 - 0.3 * (g_dds + g_ssm)
    assert torch.allclose(z_new, expected, atol=1e-6)
    assert model.unet.calls == [4, 2]  # one batched CFG call, one SSM call


def test_ssm_pass_is_skipped_when_both_terms_are_off():
    model = StubModel({"": 0.0, "a": 1.0, "b": 2.0})
    z = torch.randn(1, 4, 3, 2, 2)
    optimise(model, z, "a", "b", None, RestyleConfig(steps=2, spatial_ssm=False, temporal_ssm=False))
    assert model.unet.calls == [4, 4]
    model.unet.calls.clear()
    optimise(model, z, "a", "b", None, RestyleConfig(steps=2, lambda_s=0.0, temporal_ssm=False))
    assert model.unet.calls == [4, 4]


def test_forward_noise_shares_one_eps():
    z, zs, eps = torch.randn(1, 4, 2, 2, 2), torch.randn(1, 4, 2, 2, 2), torch.randn(1, 4, 2, 2, 2)
    ac = torch.linspace(0.99, 0.01, 1000)
    z_t, zs_t = forward_noise(z, zs, 500, eps, ac)
    # atol: the shared noise cancels only up to float32 rounding, which rtol alone misses near zero.
    assert torch.allclose(z_t - zs_t, ac[500].sqrt() * (z - zs), atol=1e-6)
    assert torch.allclose(z_t, ac[500].sqrt() * z + (1 - ac[500]).sqrt() * eps, atol=1e-6)


def test_a_clip_one_window_long_is_the_same_with_windowing_on_and_off(t2v):
    frames = clip(n=4)
    on = restyle(t2v, frames, "a dog", "a tiger", config=RestyleConfig(steps=2, window=4, overlap=2)).frames
    off = restyle(t2v, frames, "a dog", "a tiger", config=RestyleConfig(steps=2, window=4, overlap=2, windowing=False)).frames
    assert all(np.array_equal(a, b) for a, b in zip(on, off))


def test_overlapping_windows_share_one_z_and_average_on_the_overlap():
    """With a stub whose gradient is per frame, a frame in two windows gets the mean of its two gradients."""
    model = StubModel({"": 0.0, "a": 1.0, "b": 2.0})
    z_src = torch.randn(1, 4, 5, 2, 2, generator=torch.Generator().manual_seed(0))
    cfg = RestyleConfig(steps=1, window=3, overlap=1, spatial_ssm=False, temporal_ssm=False)
    ticks = []
    z_win, _ = optimise(model, z_src, "a", "b", None, cfg, progress=lambda d, n: ticks.append((d, n)))
    z_one, _ = optimise(model, z_src, "a", "b", None, cfg.model_copy(update=dict(windowing=False)))
    assert ticks == [(1, 2), (2, 2)]  # windows [0, 3) and [2, 5), frame 2 shared
    # The stub's DDS gradient of a frame does not depend on its window: averaging it keeps it.
    assert torch.allclose(z_win, z_one, atol=1e-6)


def test_progress_exception_aborts_the_edit(t2v):
    def cancel(done, total):
        raise KeyboardInterrupt("cancelled")

    flags = [p.requires_grad for p in t2v.unet.parameters()]
    with pytest.raises(KeyboardInterrupt):
        restyle(t2v, clip(), "a dog", "a tiger", config=RestyleConfig(steps=3, checkpointing=True), progress=cancel)
    # The resident model is as before: processors, checkpoint wrappers and requires_grad flags restored.
    assert all(type(p).__name__ != "KeyCaptureProcessor" for p in t2v.unet.attn_processors.values())
    assert all("forward" not in vars(b) for b in [*t2v.unet.down_blocks, t2v.unet.mid_block, *t2v.unet.up_blocks])
    assert [p.requires_grad for p in t2v.unet.parameters()] == flags


def test_any_size_and_count_comes_back_as_given(t2v):
    frames = clip(n=3, h=27, w=45)
    out = restyle(t2v, frames, "a dog", "a tiger", config=RestyleConfig(steps=1))
    assert len(out.frames) == 3 and all(f.shape == (27, 45, 3) and f.dtype == np.uint8 for f in out.frames)
    assert len(out.losses) == 1 and out.seconds["total"] > 0 and out.seconds["per_iteration"] > 0 and out.peak_bytes > 0


def test_checkpointing_changes_memory_not_the_result(t2v):
    frames = clip(n=3)
    a = restyle(t2v, frames, "a dog", "a tiger", config=RestyleConfig(steps=2)).frames
    b = restyle(t2v, frames, "a dog", "a tiger", config=RestyleConfig(steps=2, checkpointing=True)).frames
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all("forward" not in vars(blk) for blk in t2v.unet.up_blocks)


def test_mask_keeps_latents_outside_it_without_ssm(t2v):
    z_src = latents(t2v, clip(h=64, w=64))  # latent 8x8
    m = torch.zeros(4, 8, 8)
    m[:, 2:5, 3:7] = 1
    z, _ = optimise(t2v, z_src, "a dog", "a tiger", m, RestyleConfig(steps=2, spatial_ssm=False, temporal_ssm=False))
    moved = (z != z_src).any(dim=1)[0]  # (F, h, w)
    assert torch.equal(moved, m.bool())


def test_ssm_pass_stops_after_the_last_captured_layer(t2v):
    """'Only the decoder layers you need': conv_out (after the last attn1) never runs in the SSM pass."""
    calls = []
    hook = t2v.unet.conv_out.register_forward_hook(lambda *a: calls.append(1))
    try:
        optimise(t2v, latents(t2v, clip()), "a dog", "a tiger", None, RestyleConfig(steps=2))
    finally:
        hook.remove()
    assert len(calls) == 2  # the two batched DDS calls only, not the two SSM calls
