"""The SVD keyframe backend on the tiny SVD-shaped model (CPU, fp32): interface, conditioning, weights, framing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreammover.backends.svd_config import SVDKeyframeConfig

FAST = dict(num_frames=3, size=64, num_inference_steps=2, noise_injection_steps=1, guidance_scale=1.0)


@pytest.fixture(scope="module")
def svd(dreammover_home):
    from dreammover.backends import load_backend

    return load_backend("svd", "tiny-svd", device="cpu", dtype="fp32")


@pytest.fixture(scope="module")
def pair():
    g = np.random.default_rng(0)
    return g.integers(0, 256, (72, 128, 3), dtype=np.uint8), g.integers(0, 256, (72, 128, 3), dtype=np.uint8)


def test_interpolate_returns_the_documented_clip(svd, pair):
    cfg = SVDKeyframeConfig(**FAST)
    res = svd.interpolate(*pair, cfg)
    assert len(res.frames) == cfg.num_frames + 2 and res.deltas == cfg.deltas
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in res.frames)
    assert set(res.seconds) == {"prepare", "encode", "denoise", "decode"}
    # 2 steps, the first repeated once (ratio 0.5): 3 fused steps x 2 paths x 5 frames
    assert res.unet_evals == {"denoise": 3 * 2 * 5}
    again = svd.interpolate(*pair, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(res.frames, again.frames))  # seeded
    kept = svd.interpolate(*pair, cfg.model_copy(update={"keep_inputs": True}))
    prepared = svd.prepare(*pair, cfg)
    assert np.array_equal(kept.frames[0], prepared[0]) and np.array_equal(kept.frames[-1], prepared[1])


def _no_temporal_mixing(unet):
    """Every AlphaBlender passes only its spatial branch: a per-frame model that cannot make motion."""
    from diffusers.models.resnet import AlphaBlender

    saved = {}
    for name, m in unet.named_modules():
        if isinstance(m, AlphaBlender):
            saved[name] = m.mix_factor.detach().clone()
            m.mix_factor.data.fill_(-1e4 if m.switch_spatial_to_temporal_mix else 1e4)
    return saved


def test_identical_keyframes_without_motion_fuse_to_both_paths(svd, pair):
    """With I_0 = I_{N-1} and a model without temporal mixing, v̂_{t,0} = flip(v̂_{t,1}) = fused, on any z_t."""
    from dreammover.backends.dual_sampling import (PathModel, backward_motion_prediction, fuse,
                                                   forward_motion_prediction)

    unet = svd.components.unet
    saved = _no_temporal_mixing(unet)
    try:
        cfg = SVDKeyframeConfig(**FAST)
        svd.use_backward_model(cfg)
        a = svd.prepare(*pair, cfg)[0]
        cond = svd.encode_keyframes([a, a], cfg)
        model = PathModel(unet, cond, 1.0, svd.control)
        z = torch.randn(1, 5, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 4  # differs per frame
        t, sigma = torch.tensor(0.3), torch.tensor(3.0)
        with torch.no_grad():
            v0 = forward_motion_prediction(model, z, t, sigma)
            v1 = backward_motion_prediction(model, z, t, sigma)
        assert torch.allclose(v0, v1, atol=1e-5)
        assert torch.allclose(fuse(v0, v1, 0.5), v0, atol=1e-5)
        assert not torch.allclose(v0[:, 0], v0[:, 1], atol=1e-3)  # frames really differ
    finally:
        for name, m in unet.named_modules():
            if name in saved:
                m.mix_factor.data.copy_(saved[name])


def test_keyframe_latents_are_each_keyframe_encoded(svd, pair):
    """c_0 comes from I_0 and c_{N-1} from I_{N-1}: swapping the keyframes swaps the conditioning."""
    cfg = SVDKeyframeConfig(**FAST)
    a, b = svd.prepare(*pair, cfg)
    ab, ba = svd.encode_keyframes([a, b], cfg), svd.encode_keyframes([b, a], cfg)
    assert torch.allclose(ab.latents[0], ba.latents[1], atol=1e-5) and torch.allclose(ab.embeddings[0],
                                                                                      ba.embeddings[1], atol=1e-5)
    assert not torch.allclose(ab.latents[0], ab.latents[1], atol=1e-3)


def test_backward_weights_from_a_full_unet_checkpoint_and_as_a_delta(svd, tmp_path):
    """The authors ship a whole fine-tuned UNet: only W_v/W_o are taken; with a base, W + (W_ft - W_base)."""
    from safetensors.torch import save_file

    from dreammover.backends.backward_weights import BackwardWeightsError, load_backward_weights

    unet = svd.components.unet
    sd = {k: v.clone() for k, v in unet.state_dict().items()}
    key = "up_blocks.1.attentions.0.temporal_transformer_blocks.0.attn1.to_v.weight"
    other = "up_blocks.1.attentions.0.temporal_transformer_blocks.0.attn1.to_q.weight"
    base = dict(sd)
    tuned = dict(sd, **{key: sd[key] + 1.0, other: sd[other] + 5.0})
    (tmp_path / "ft" / "unet").mkdir(parents=True)
    save_file(tuned, str(tmp_path / "ft" / "unet" / "diffusion_pytorch_model.safetensors"))
    save_file({k: v - 2.0 for k, v in base.items()}, str(tmp_path / "base.safetensors"))
    w = load_backward_weights(unet, tmp_path / "ft").state()
    assert len(w) == 2 * 10 and torch.equal(w[key], sd[key] + 1.0) and other not in w
    delta = load_backward_weights(unet, tmp_path / "ft", tmp_path / "base.safetensors").state()
    assert torch.allclose(delta[key], sd[key] + 3.0)  # W + (W + 1 - (W - 2))
    save_file({key: sd[key]}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(BackwardWeightsError, match="missing"):
        load_backward_weights(unet, tmp_path / "partial.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BackwardWeightsError, match="readable"):
        load_backward_weights(unet, tmp_path / "bad.safetensors")


def test_rotation_defaults_follow_table1():
    assert SVDKeyframeConfig().rotated_blocks() == "up"                        # w/o FT
    assert SVDKeyframeConfig(backward_weights="w.safetensors").rotated_blocks() == "all"


def test_non_16_9_keyframes_are_centre_cropped():
    from dreammover.backends.svd_keyframe import fit_keyframes

    tall = np.zeros((400, 200, 3), np.uint8)
    tall[:100] = tall[-100:] = (255, 0, 0)  # outside the central 16:9 band
    tall[100:-100] = (0, 200, 0)
    a, b = fit_keyframes(tall, tall, SVDKeyframeConfig(size=128))
    assert a.shape == (64, 128, 3)  # 128 x 72 rounded to multiples of 64
    assert a[..., 0].max() < 10 and a[..., 1].min() > 190  # only the centre survives
    from dreammover.images import load_and_prepare

    same = fit_keyframes(tall, tall, SVDKeyframeConfig(size=128, frame="input"))
    assert np.array_equal(same[0], load_and_prepare(tall, tall, 128, "cover")[0])


def test_clip_resize_matches_svd_reference_preprocessing():
    from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import \
        _resize_with_antialiasing

    from dreammover.backends.svd_keyframe import clip_resize

    x = torch.rand(2, 3, 72, 128) * 2 - 1
    assert torch.allclose(clip_resize(x, 32), _resize_with_antialiasing(x, (32, 32)), atol=1e-5)


def test_size_defaults_to_the_models_own(svd, pair):
    assert svd.resolve(None).size == 128                               # tiny-svd; SVD itself: 1024
    assert svd.prepare(*pair, SVDKeyframeConfig())[0].shape == (64, 128, 3)
    assert svd.resolve(SVDKeyframeConfig(size=256)).size == 256
