"""Restyle properties that mutation testing (docs/mutation.md, issue 17) showed the other restyle tests left open."""
from __future__ import annotations

import resource
import warnings
from contextlib import nullcontext

import cv2
import numpy as np
import pytest
import torch

from dreammover.restyle import (RestyleConfig, RestyleInputError, fit_size, forward_noise, key_layers, latent_mask,
                                mask_from_box, masked_dds_gradient, parse_box, read_mask, restyle)
from dreammover.restyle.edit import _peak_bytes, optimise
from dreammover.restyle.method import guided_eps, ssm_gradient, to_tensor, to_uint8, unet_autocast
from dreammover.restyle.windows import clip_windows, resize_frames
from restyle_stubs import StubModel, clip, t2v  # noqa: F401 - t2v is a fixture

CPU = torch.device("cpu")


def test_pixels_map_affinely_onto_minus_one_one_and_back_exactly():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    frames = [np.stack([ramp, 255 - ramp, ramp], axis=-1)] * 2
    x = to_tensor(frames, CPU)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    v = x[0, 0].flatten()
    assert v[0] == -1 and v[-1] == 1  # 0 -> -1, 255 -> 1
    assert torch.allclose(v.diff(), torch.full((255,), 2 / 255))  # evenly spaced: an affine map
    assert all(np.array_equal(a, b) for a, b in zip(to_uint8(x), frames))  # lossless round trip


def test_to_uint8_clips_out_of_range_values_to_black_and_white():
    x = torch.tensor([-3.0, -1.5, -1.0, 0.0, 1.0, 1.5, 3.0]).view(1, 1, 1, 7).expand(1, 3, 1, 7)
    out = to_uint8(x)[0][0, :, 0]
    assert out.tolist() == [0, 0, 0, 128, 255, 255, 255]


def test_fit_size_steps_back_when_rounding_overshoots_the_budget():
    # 100x100 at 9000 px: both sides round up to 96 (9216 px), one side must give back a multiple.
    h, w = fit_size(100, 100, 16, 9000)
    assert h * w <= 9000 and {h, w} == {80, 96}
    # 100x120 at 10000 px: 96x112 overshoots; the longer side (width) gives back.
    assert fit_size(100, 120, 16, 10_000) == (96, 96)
    # A budget below one multiple still gives the smallest valid frame.
    assert fit_size(100, 100, 16, 100) == (16, 16)


def test_resize_frames_keeps_equal_sizes_and_every_frame():
    frames = clip(n=3, h=8, w=8)
    out = resize_frames(frames, 8, 8)
    assert len(out) == 3 and all(o is f for o, f in zip(out, frames))  # unchanged, not re-filtered
    mixed = resize_frames([frames[0], np.zeros((4, 4, 3), np.uint8)], 8, 8)
    assert len(mixed) == 2 and mixed[1].shape == (8, 8, 3)


@pytest.mark.parametrize("shape", [(32, 8), (8, 32)])
def test_shrinking_is_an_area_filter(shape):
    """Shrinking by a whole factor gives each output pixel the mean of its block (no aliasing)."""
    (h, w), rng = shape, np.random.default_rng(1)
    f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = resize_frames([f], 8, 8)[0].astype(np.float64)
    blocks = f.reshape(8, h // 8, 8, w // 8, 3).mean(axis=(1, 3))
    assert np.abs(out - blocks).max() <= 0.5


def test_enlarging_is_cubic():
    """Cubic interpolation overshoots at a step edge (it keeps edges sharp); area or linear would not."""
    f = np.zeros((8, 8, 3), np.uint8)
    f[:, :4], f[:, 4:] = 64, 192
    out = resize_frames([f], 32, 32)[0]
    assert out.min() < 64 and out.max() > 192


def test_box_edges_are_inclusive_of_zero_and_one():
    assert parse_box("0,0,1,1") == (0, 0, 1, 1)
    with pytest.raises(RestyleInputError, match="w, h > 0"):
        parse_box("1,2,3,0")
    for box in [(8, 0, 1, 1), (0, 5, 1, 1)]:  # starts exactly at the right or bottom edge of an 8x5 frame
        with pytest.raises(RestyleInputError, match="outside"):
            mask_from_box(box, 1, 5, 8)
    assert mask_from_box((7, 4, 1, 1), 1, 5, 8)[0, 4, 7] == 1  # the last pixel is inside


def test_read_mask_takes_zero_one_and_zero_255_images_alike(tmp_path):
    img = np.zeros((6, 10), np.uint8)
    img[2:4, 3:7] = 1
    cv2.imwrite(str(tmp_path / "01.png"), img)
    cv2.imwrite(str(tmp_path / "0255.png"), img * 255)
    cv2.imwrite(str(tmp_path / "faint.png"), img * 2)
    m01, m255 = read_mask(tmp_path / "01.png", 2, 6, 10), read_mask(tmp_path / "0255.png", 2, 6, 10)
    assert m01.dtype == np.float32 and np.array_equal(m01, m255) and m01.sum() == 2 * 8
    faint = read_mask(tmp_path / "faint.png", 2, 6, 10)
    assert 0 < faint.max() <= 1  # a 0..255 image is scaled to [0, 1] whatever its brightest value
    with pytest.raises(RestyleInputError, match="give a mask of the video's size"):
        read_mask(tmp_path / "01.png", 2, 6, 11)


def test_unreadable_mask_video_is_one_line_naming_file_and_error(tmp_path, monkeypatch):
    import dreammover.video

    def broken(path):
        raise OSError("codec exploded")

    monkeypatch.setattr(dreammover.video, "read_video", broken)
    (tmp_path / "m.mp4").write_bytes(b"x")
    with pytest.raises(RestyleInputError) as err:
        read_mask(tmp_path / "m.mp4", 2, 6, 10)
    assert "m.mp4" in str(err.value) and "cannot be read (OSError)" in str(err.value)


def test_latent_mask_takes_a_single_2d_mask_and_integer_masks():
    m = np.zeros((16, 16), np.uint8)
    m[0, 15] = 1
    lm = latent_mask(m, 3, 2, 2)
    assert lm.shape == (3, 2, 2) and lm.dtype == torch.float32
    assert torch.equal(lm, torch.tensor([[0.0, 1.0], [0.0, 0.0]]).expand(3, 2, 2))


def test_key_layers_are_the_decoders_spatial_self_attention_only(t2v):
    expected = [f"up_blocks.1.attentions.{i}.transformer_blocks.0.attn1.processor" for i in (0, 1)]
    assert key_layers(t2v.unet) == expected
    assert key_layers(t2v.unet, (1,)) == expected
    with pytest.raises(ValueError, match=r"decoder blocks \(0,\)"):
        key_layers(t2v.unet, (0,))  # up_blocks.0 has no attentions in the tiny model


@pytest.mark.parametrize("off", ["spatial_ssm", "temporal_ssm"])
def test_a_switched_off_ssm_term_is_not_computed(off):
    model = StubModel({"": 0.5, "a": 1.0, "b": 3.0})
    z = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    start = z + torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    _, losses = optimise(model, z, "a", "b", None, RestyleConfig(steps=1, **{off: False}), start=start)
    on, zero = ("ssm_t", "ssm_s") if off == "spatial_ssm" else ("ssm_s", "ssm_t")
    assert losses[0][zero] == 0 and losses[0][on] > 0


def test_restyle_passes_the_mask_to_the_optimiser(t2v):
    frames = clip()
    cfg = RestyleConfig(steps=2, spatial_ssm=False, temporal_ssm=False)
    still = restyle(t2v, frames, "a dog", "a dog", config=cfg.model_copy(update=dict(steps=0))).frames
    zero = restyle(t2v, frames, "a dog", "a tiger", mask=np.zeros((32, 32), np.float32), config=cfg).frames
    assert all(np.array_equal(a, b) for a, b in zip(zero, still))  # a zero mask: DDS moves nothing
    full = restyle(t2v, frames, "a dog", "a tiger", mask=np.ones((4, 32, 32), np.float32), config=cfg).frames
    free = restyle(t2v, frames, "a dog", "a tiger", config=cfg).frames
    assert all(np.array_equal(a, b) for a, b in zip(full, free))
    ignored = restyle(t2v, frames, "a dog", "a tiger", mask=np.zeros((32, 32), np.float32),
                      config=cfg.model_copy(update=dict(use_mask=False))).frames
    assert all(np.array_equal(a, b) for a, b in zip(ignored, free))
    with pytest.raises(RestyleInputError, match="give a mask of the video's size"):
        restyle(t2v, frames, "a dog", "a tiger", mask=np.zeros((32, 31), np.float32), config=cfg)


def test_during_the_edit_no_parameter_requires_grad_and_blocks_are_checkpointed(t2v):
    modules = (t2v.unet, t2v.vae, t2v.text_encoder)
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    seen = []

    def look(done, total):
        seen.append(([any(p.requires_grad for p in m.parameters()) for m in modules],
                     all("forward" in vars(b) for b in t2v.unet.up_blocks)))

    try:
        for m in modules:
            m.requires_grad_(True)  # a model left trainable by its caller
        restyle(t2v, clip(n=2), "a dog", "a tiger", config=RestyleConfig(steps=1, checkpointing=True), progress=look)
        assert all(p.requires_grad for m in modules for p in m.parameters())  # the caller's flags come back
    finally:
        for m, fl in zip(modules, flags):
            for p, f in zip(m.parameters(), fl):
                p.requires_grad_(f)
    assert seen == [([False, False, False], True)]


def test_seconds_add_up_and_per_iteration_divides_by_window_steps(t2v):
    cfg = RestyleConfig(steps=2, window=2, overlap=1, spatial_ssm=False, temporal_ssm=False)
    s = restyle(t2v, clip(n=3), "a dog", "a tiger", config=cfg).seconds  # windows [0, 2) and [1, 3)
    assert set(s) == {"encode", "optimise", "decode", "total", "per_iteration"}
    assert all(v > 0 for v in s.values())
    assert s["encode"] + s["optimise"] + s["decode"] == pytest.approx(s["total"])
    assert s["per_iteration"] == pytest.approx(s["optimise"] / 4)
    one = restyle(t2v, clip(n=2), "a dog", "a tiger", config=RestyleConfig(steps=1, windowing=False)).seconds
    assert one["per_iteration"] == pytest.approx(one["optimise"])


def test_peak_bytes_on_cpu_is_the_resident_peak_in_bytes():
    peak = _peak_bytes(CPU)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert isinstance(peak, int) and 50 * 2**20 < peak <= after  # torch alone keeps > 50 MiB resident


def test_unet_autocast_is_cuda_only_and_follows_the_model_dtype():
    assert isinstance(unet_autocast(CPU, torch.float16), nullcontext)
    cuda = torch.device("cuda")
    assert isinstance(unet_autocast(cuda, torch.float16, enabled=False), nullcontext)
    with warnings.catch_warnings():  # building the context needs no GPU (torch only warns without one)
        warnings.simplefilter("ignore")
        fp16, bf16 = unet_autocast(cuda, torch.float32), unet_autocast(cuda, torch.bfloat16)
    assert (fp16.device, fp16.fast_dtype) == ("cuda", torch.float16)
    assert (bf16.device, bf16.fast_dtype) == ("cuda", torch.bfloat16)


def test_dds_gradient_is_scaled_by_the_latent_area_on_a_non_square_grid():
    e1, e2 = torch.randn(1, 4, 2, 3, 5), torch.randn(1, 4, 2, 3, 5)
    assert torch.allclose(masked_dds_gradient(e1, e2, None, 30.0), (e1 - e2) * 2)  # 30 / (3·5)


def test_windowing_off_is_one_window_for_any_length():
    assert clip_windows(10, RestyleConfig(window=4, overlap=2, windowing=False)) == [(0, 10)]
    assert len(clip_windows(10, RestyleConfig(window=4, overlap=2))) > 1


def test_ssm_blocks_choose_the_key_layers(t2v):
    z = torch.zeros(1, 4, 2, 4, 4)
    with pytest.raises(ValueError, match="decoder blocks"):
        optimise(t2v, z, "a dog", "a tiger", None, RestyleConfig(steps=1, ssm_blocks=(0,)))


def test_recorded_losses_are_the_mean_over_windows():
    """Two windows [0, 2) and [1, 3): each recorded value is the mean of the windows' own values."""
    model = StubModel({"": 0.5, "a": 1.0, "b": 3.0})
    cfg = RestyleConfig(steps=1, window=2, overlap=1, seed=4)
    z_src = torch.randn(1, 4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    start = z_src + torch.randn(z_src.shape, generator=torch.Generator().manual_seed(1))
    _, losses = optimise(model, z_src, "a", "b", None, cfg, start=start)

    gen = torch.Generator().manual_seed(cfg.seed)  # the same draws as optimise: t, then one ε for the clip
    t = int(torch.randint(cfg.t_min, cfg.t_max, (1,), generator=gen))
    eps = torch.randn(z_src.shape, generator=gen)
    emb = [model.embed(p) for p in ("", "a", "b")]
    layers = key_layers(model.unet)
    per_window = []
    for a, b in [(0, 2), (1, 3)]:
        zw, zsw, ew = start[:, :, a:b], z_src[:, :, a:b], eps[:, :, a:b]
        z_t, zs_t = forward_noise(zw, zsw, t, ew, model.alphas_cumprod)
        e_s, e_t = guided_eps(model.unet, zs_t, z_t, t, *emb, cfg.guidance_scale)
        dds = float(masked_dds_gradient(e_t, e_s, None, cfg.dds_scale).norm())
        _, l_s, l_t = ssm_gradient(model.unet, zw, zs_t, t, ew, model.alphas_cumprod, emb[1], emb[2], layers,
                                   cfg.lambda_s, cfg.lambda_t)
        per_window.append((dds, l_s, l_t))
    assert min(v for w in per_window for v in w) > 0
    mean = [sum(v) / 2 for v in zip(*per_window)]
    assert losses[0]["t"] == t
    assert [losses[0][k] for k in ("dds", "ssm_s", "ssm_t")] == pytest.approx(mean, rel=1e-5)


def test_integer_frames_of_any_width_edit_like_uint8_frames(t2v):
    frames = clip(n=2, h=27, w=45)  # a size the model does not take: frames are resized both ways
    cfg = RestyleConfig(steps=1)
    as_uint8 = restyle(t2v, frames, "a dog", "a tiger", config=cfg).frames
    as_int64 = restyle(t2v, [f.astype(np.int64) for f in frames], "a dog", "a tiger", config=cfg).frames
    assert all(np.array_equal(a, b) for a, b in zip(as_uint8, as_int64))

