"""Properties of Generative Inbetweening's pieces: rotated temporal attention (Sec. 4.1) and Alg. 2's steps."""
from __future__ import annotations

import pytest
import torch

from dreammover.backends.dual_sampling import (
    KeyframeCondition, PathModel, backward_motion_prediction, dual_directional_sampling, euler_update,
    forward_motion_prediction, fuse, fusion_weights, reinject_noise,
)
from dreammover.backends.temporal_attention import (
    DualPathTemporalAttnProcessor, TemporalAttentionControl, rotate_attention_map,
)

N, C, H, W = 5, 4, 2, 3


def test_rotated_attention_map_reverses_the_frame_order_of_values():
    """rot180(A) applied to the reversed value sequence is the reversed output of A (Sec. 4.1)."""
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(3, N, N, generator=g), -1)
    v = torch.randn(3, N, 8, generator=g)
    assert torch.allclose(rotate_attention_map(a) @ v.flip(1), (a @ v).flip(1), atol=1e-6)
    # A map where every frame looks at frame 0 becomes one where every frame looks at the last frame.
    first = torch.zeros(N, N)
    first[:, 0] = 1
    assert torch.equal(rotate_attention_map(first) @ v[0], v[0, -1].expand(N, -1))


def test_backward_processor_on_reversed_frames_gives_reversed_output():
    """The processor: forward path records A; backward on flip(x) with rot180(A) (same W) returns flip(out)."""
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    control = TemporalAttentionControl(rotated_layers=frozenset({"t"}))
    attn.set_processor(DualPathTemporalAttnProcessor("t", control))
    x = torch.randn(6, N, 16)  # rows: (video, pixel); sequence: frames
    with torch.no_grad():
        control.set_mode("forward")
        out_fwd = attn(x)
        assert control.maps["t"].shape == (6, 2, N, N)
        control.set_mode("backward")
        out_bwd = attn(x.flip(1))
        control.set_mode("plain")
        plain = attn(x)
    assert torch.allclose(out_bwd, out_fwd.flip(1), atol=1e-5)
    assert torch.allclose(plain, out_fwd, atol=1e-5)          # recording does not change the forward result


def test_backward_path_uses_the_rotated_forward_map_with_its_own_values():
    """Teacher-forced (Fig. 2): out' = W_o (rot180(softmax(Q K^T/√d)) · W_v' x'), Q, K from the forward input."""
    from diffusers.models.attention_processor import Attention

    from dreammover.backends.temporal_attention import BackwardMotionWeights

    torch.manual_seed(0)
    attn = Attention(query_dim=16, heads=2, dim_head=8)
    w_v, w_o = torch.randn(16, 16), torch.randn(16, 16)
    control = TemporalAttentionControl(rotated_layers=frozenset({"t"}),
                                       backward_weights=BackwardMotionWeights({"t.to_v.weight": w_v,
                                                                               "t.to_out.0.weight": w_o}))
    attn.set_processor(DualPathTemporalAttnProcessor("t", control))
    x, x_b = torch.randn(3, N, 16), torch.randn(3, N, 16)  # backward hidden states need not mirror x
    with torch.no_grad():
        control.set_mode("forward")
        attn(x)
        control.set_mode("backward")
        out = attn(x_b)
        heads = lambda t: t.view(3, N, 2, 8).transpose(1, 2)  # noqa: E731
        a = torch.softmax(heads(attn.to_q(x)) @ heads(attn.to_k(x)).transpose(-1, -2) / 8 ** 0.5, -1)
        ref = (a.flip(-2, -1) @ heads(x_b @ w_v.T)).transpose(1, 2).reshape(3, N, 16) @ w_o.T + attn.to_out[0].bias
    assert torch.allclose(out, ref, atol=1e-5)


def test_fusing_a_path_with_itself_is_the_identity():
    v = torch.randn(1, N, C, H, W)
    for mode in ("mean", "linear"):
        assert torch.equal(fuse(v, v, fusion_weights(N, mode)), v)
    assert torch.allclose(fuse(v, -v, 0.5), torch.zeros_like(v))  # the mean of two opposite paths


class FrameWeightedUNet:
    """A stub with SVD's UNet signature: v = z_in ⊙ w[frame] (position-dependent, like SVD's first-frame anchor)."""

    def __init__(self, w: torch.Tensor):
        self.w, self.calls = w, []

    def __call__(self, sample, t, encoder_hidden_states, added_time_ids, return_dict=False):
        self.calls.append((sample.clone(), encoder_hidden_states.clone()))
        return (sample[:, :, :C] * self.w.view(1, -1, 1, 1, 1),)


def _cond(lat0=None, lat1=None) -> KeyframeCondition:
    lat = torch.stack([lat0 if lat0 is not None else torch.zeros(C, H, W),
                       lat1 if lat1 is not None else torch.zeros(C, H, W)])
    return KeyframeCondition(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), lat, torch.tensor([[6.0, 127.0, 0.02]]))


def test_time_flip_is_applied_exactly_once_on_each_side():
    """Hand-computed: forward z ⊙ w; backward flip(flip(z) ⊙ w) = z ⊙ flip(w) (0 or 2 flips would differ)."""
    w = torch.arange(1.0, N + 1)
    z = torch.randn(1, N, C, H, W)
    sigma = torch.tensor(0.0)  # c_in = 1: the stub sees z itself
    model = PathModel(FrameWeightedUNet(w), _cond())
    v0 = forward_motion_prediction(model, z, torch.tensor(0.0), sigma)
    v1 = backward_motion_prediction(model, z, torch.tensor(0.0), sigma)
    assert torch.allclose(v0, z * w.view(1, -1, 1, 1, 1))
    assert torch.allclose(v1, z * w.flip(0).view(1, -1, 1, 1, 1))
    fused = fuse(v0, v1, fusion_weights(N, "mean"))
    assert torch.allclose(fused, z * ((w + w.flip(0)) / 2).view(1, -1, 1, 1, 1))


def test_endpoints_are_conditioned_on_the_right_keyframe():
    """SVD anchors its first frame to the conditioning; after the flip, the backward anchor is the clip's last frame."""
    class FirstFrameCopiesCondition(FrameWeightedUNet):
        def __call__(self, sample, t, encoder_hidden_states, added_time_ids, return_dict=False):
            self.calls.append((sample.clone(), encoder_hidden_states.clone()))
            v = torch.zeros_like(sample[:, :, :C])
            v[:, 0] = sample[:, 0, C:]  # frame 0 of a path becomes its conditioning latent
            return (v,)

    lat0, lat1 = torch.full((C, H, W), 1.0), torch.full((C, H, W), -2.0)
    unet = FirstFrameCopiesCondition(torch.ones(N))
    model = PathModel(unet, _cond(lat0, lat1))
    z = torch.randn(1, N, C, H, W)
    v = fuse(forward_motion_prediction(model, z, 0.0, torch.tensor(0.0)),
             backward_motion_prediction(model, z, 0.0, torch.tensor(0.0)), 0.5)
    assert torch.allclose(v[0, 0], 0.5 * lat0) and torch.allclose(v[0, -1], 0.5 * lat1)
    assert torch.count_nonzero(v[0, 1:-1]) == 0
    (s_fwd, e_fwd), (s_bwd, e_bwd) = unet.calls
    assert torch.equal(e_fwd, torch.tensor([[[1.0, 0.0]]])) and torch.equal(e_bwd, torch.tensor([[[0.0, 1.0]]]))
    assert torch.equal(s_fwd[0, :, C:], lat0.expand(N, -1, -1, -1))   # every frame sees I_0's latent ...
    assert torch.equal(s_bwd[0, :, C:], lat1.expand(N, -1, -1, -1))   # ... or I_{N-1}'s on the backward path


def test_euler_update_matches_diffusers_euler_step_for_v_prediction():
    """update() of Alg. 2 is SVD's Euler step: teacher-forced against EulerDiscreteScheduler.step."""
    from diffusers import EulerDiscreteScheduler

    from dreammover.backends.svd_tiny import SVD_SCHEDULER

    sched = EulerDiscreteScheduler(**SVD_SCHEDULER)
    sched.set_timesteps(6)
    z, v = torch.randn(1, N, C, H, W), torch.randn(1, N, C, H, W)
    for i in (0, 3, 5):
        sched._step_index = i
        ref = sched.step(v, sched.timesteps[i], z).prev_sample
        assert torch.allclose(euler_update(z, v, sched.sigmas[i], sched.sigmas[i + 1]), ref, atol=1e-5, rtol=1e-5)


def test_noise_reinjection_restores_the_noise_level_of_the_step():
    """σ_{t-1}² + (σ_t² − σ_{t-1}²) = σ_t²: re-noised pure noise has the variance of step t."""
    z = torch.randn(400, 1000, generator=torch.Generator().manual_seed(1)) * 3.0
    out = reinject_noise(z, torch.tensor(5.0), torch.tensor(3.0), torch.Generator().manual_seed(2))
    assert abs(out.std().item() - 5.0) < 0.02


@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_recurrence_repeats_the_first_steps_as_configured(guidance):
    """UNet frame-evaluations = (S + ⌊S·ratio⌋·R) steps × 2 paths × N frames × (2 with CFG)."""
    counted = []
    model = PathModel(FrameWeightedUNet(torch.ones(N)), _cond(), guidance, count=counted.append)
    steps, sigmas = torch.arange(4.0), torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    dual_directional_sampling(model, torch.randn(1, N, C, H, W), steps, sigmas, 0.5, injection_steps=3,
                              injection_ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert sum(counted) == (4 + 2 * 3) * 2 * N * (2 if guidance > 1 else 1)


def test_alg1_v_loss_equals_the_edm_weighted_denoiser_loss():
    """Alg. 1's ||v̂ - (α flip(ε) - σ flip(z))||² = SVD's EDM loss (1+σ²)/σ² ||D(z_t) - z||²."""
    from dreammover.backends.dual_sampling import denoised

    g = torch.Generator().manual_seed(0)
    z, eps, v_hat = (torch.randn(1, N, C, H, W, generator=g) for _ in range(3))
    for sigma in (torch.tensor(0.05), torch.tensor(1.3), torch.tensor(40.0)):
        alpha, sig_vp = 1 / (sigma ** 2 + 1) ** 0.5, sigma / (sigma ** 2 + 1) ** 0.5
        v_loss = ((v_hat - (alpha * eps - sig_vp * z)) ** 2).mean()
        edm = ((1 + sigma ** 2) / sigma ** 2 * (denoised(z + sigma * eps, v_hat, sigma) - z) ** 2).mean()
        assert torch.allclose(v_loss, edm, rtol=1e-4)
