"""Steps 7-11 teacher-forced through dreammover.denoise.denoise_chunk with a stub eps model (DESIGN §3 steps 8-10)."""
import math

import pytest
import torch

from dreammover import InterpolationConfig
from dreammover.ddim import DDIMSchedule
from dreammover.denoise import EpsModel, chunks, denoise_chunk
from dreammover.fusion import fuse_direct, fuse_high_level, fuse_low_level_wta, fuse_low_level_wta_splat
from dreammover.state import PairState
from method_stubs import StubEps, sd15_alpha_bar, sd15_scheduler

AB = sd15_alpha_bar()
CFG = dict(size=64, num_inference_steps=10, inversion_steps=4, feature_step=1)   # denoising at 301, 201, 101, 1
DELTAS = [0.25, 0.5, 0.8]


@pytest.fixture(scope="module")
def sched():
    return DDIMSchedule.from_scheduler(sd15_scheduler(), 10)


def _state(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    zT = torch.randn(2, 4, 4, 4, generator=g)
    x0 = 0.5 * torch.randn(2, 4, 4, 4, generator=g)
    # integer flows in {-1, 0, 1}: several sources collide, so the splatting weights (and alpha) matter
    f01 = torch.randint(-1, 2, (2, 4, 4), generator=g).float()
    f10 = torch.randint(-1, 2, (2, 4, 4), generator=g).float()
    return PairState(zT.to(dtype), x0.to(dtype), f01, f10, torch.zeros(1, 77, 32, dtype=dtype))


def _ddim(x, eps, t, x0=None):
    """Eq. 2 by hand on SD1.5's alpha-bar (t - 100 for 10 steps; alpha-bar_0 below t = 0)."""
    a_t, a_prev = float(AB[t]), float(AB[t - 100]) if t >= 100 else float(AB[0])
    if x0 is None:
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    return math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps


class _Bar:
    def __init__(self):
        self.n = 0

    def update(self, k):
        self.n += k


def test_two_level_first_step_uses_wta_noise_eq8_and_the_x0_override(sched):
    state, stub = _state(), StubEps(a=0.3, b=1e-3)
    cfg = InterpolationConfig(**CFG, splat_alpha=3.0)
    steps, bar = [], _Bar()
    out = denoise_chunk(stub, sched, state, DELTAS, cfg, progress=bar, on_step=lambda t, x: steps.append((t, x.clone())))
    zT, x0e = state.z_T, state.z_T_to_0
    # pass 1 at T: endpoints at z_T plus the WTA-selected latents (step 8, `select`)
    sel = fuse_low_level_wta(zT[0:1], zT[1:2], state.flow01, state.flow10, DELTAS)
    assert stub.timesteps == [301, 301, 201, 101, 1]
    assert torch.equal(stub.calls[0][1], torch.cat([zT, sel]))
    eps_d = stub.expected(torch.cat([zT, sel]), 301)[2:]
    # Eq. 8: z_T^delta = sqrt(ab_T) z^delta_{T->0} + sqrt(1 - ab_T) eps^delta, with Eq. 7 on the clean latents
    x0_d = fuse_high_level(x0e[0:1], x0e[1:2], state.flow01, state.flow10, DELTAS, 3.0)
    a_T = float(AB[301])
    z_d = math.sqrt(a_T) * x0_d + math.sqrt(1 - a_T) * eps_d
    assert torch.allclose(stub.calls[1][1], torch.cat([zT, z_d]), atol=1e-6)
    # pass 2 at T: the step to 201 uses the given clean latents (the endpoints' own z_{T->0}, Eq. 7 for frames)
    eps2 = stub.expected(stub.calls[1][1], 301)
    x = _ddim(None, eps2, 301, x0=torch.cat([x0e, x0_d]))
    assert steps[0][0] == 301 and torch.allclose(steps[0][1], x, atol=1e-6)
    # then plain DDIM
    for t in (201, 101, 1):
        x = _ddim(x, stub.expected(x, t), t)
    assert [t for t, _ in steps] == [301, 201, 101, 1] and bar.n == 4
    assert out.shape == (5, 4, 4, 4) and torch.allclose(out, x, atol=1e-5)


def test_splat_wta_mode_predicts_endpoint_noise_once_and_max_splats_it(sched):
    state, stub = _state(), StubEps(a=-0.2, b=2e-3)
    cfg = InterpolationConfig(**CFG, wta_mode="splat", splat_alpha=3.0)
    steps = []
    out = denoise_chunk(stub, sched, state, DELTAS, cfg, on_step=lambda t, x: steps.append(x.clone()))
    zT, x0e = state.z_T, state.z_T_to_0
    assert stub.timesteps == [301, 301, 201, 101, 1]
    assert torch.equal(stub.calls[0][1], zT)                     # only the endpoints at T
    e = stub.expected(zT, 301)
    eps_d = fuse_low_level_wta_splat(e[0:1], e[1:2], zT[0:1], zT[1:2], state.flow01, state.flow10, DELTAS, 3.0)
    x0_d = fuse_high_level(x0e[0:1], x0e[1:2], state.flow01, state.flow10, DELTAS, 3.0)
    a_T = float(AB[301])
    z_d = math.sqrt(a_T) * x0_d + math.sqrt(1 - a_T) * eps_d
    assert torch.allclose(stub.calls[1][1], torch.cat([zT, z_d]), atol=1e-6)
    x = _ddim(None, stub.expected(stub.calls[1][1], 301), 301, x0=torch.cat([x0e, x0_d]))
    assert torch.allclose(steps[0], x, atol=1e-6)
    for t in (201, 101, 1):
        x = _ddim(x, stub.expected(x, t), t)
    assert torch.allclose(out, x, atol=1e-5)


def test_direct_fusion_ablation_is_plain_ddim_from_fused_z_T(sched):
    state, stub = _state(), StubEps()
    cfg = InterpolationConfig(**CFG, fusion="direct", splat_alpha=3.0)
    bar = _Bar()
    out = denoise_chunk(stub, sched, state, DELTAS, cfg, progress=bar)
    zT = state.z_T
    x = torch.cat([zT, fuse_direct(zT[0:1], zT[1:2], state.flow01, state.flow10, DELTAS, 3.0)])
    assert stub.timesteps == [301, 201, 101, 1] and torch.equal(stub.calls[0][1], x)
    for t in (301, 201, 101, 1):
        x = _ddim(x, stub.expected(x, t), t)
    assert bar.n == 4 and torch.allclose(out, x, atol=1e-5)


def test_endpoints_do_not_depend_on_the_frames_and_frames_not_on_the_chunk(sched):
    cfg = InterpolationConfig(**CFG)
    state = _state()
    whole = denoise_chunk(StubEps(), sched, state, DELTAS, cfg)
    parts = [denoise_chunk(StubEps(), sched, state, [d], cfg) for d in DELTAS]
    for i, p in enumerate(parts):
        assert torch.allclose(p[:2], whole[:2], atol=1e-6) and torch.allclose(p[2], whole[2 + i], atol=1e-6)


def test_half_precision_state_stays_half_and_close_to_float(sched):
    cfg = InterpolationConfig(**CFG)
    full = denoise_chunk(StubEps(), sched, _state(), DELTAS, cfg)
    half = denoise_chunk(StubEps(), sched, _state(torch.float16), DELTAS, cfg)
    assert half.dtype == torch.float16
    assert torch.allclose(half.float(), full, atol=2e-2)


def test_eps_model_broadcasts_the_prompt_and_counts_images():
    class FakeUNet:
        def __call__(self, x, t, encoder_hidden_states):
            self.seen = (x, t, encoder_hidden_states)

            class Out:
                sample = 2 * x
            return Out()

    unet, counted = FakeUNet(), []
    emb = torch.randn(1, 77, 32)
    model = EpsModel(unet, emb, counted.append)
    x = torch.randn(3, 4, 2, 2)
    assert torch.equal(model(x, 261), 2 * x)
    assert unet.seen[1] == 261 and unet.seen[2].shape == (3, 77, 32) and torch.equal(unet.seen[2][2], emb[0])
    assert counted == [3]
    assert torch.equal(EpsModel(unet, emb)(x, 1), 2 * x)          # no counter: fine too


def test_chunks_split_in_order_with_a_short_tail():
    assert chunks([0.1, 0.2, 0.3, 0.4, 0.5], 2) == [[0.1, 0.2], [0.3, 0.4], [0.5]]
    assert chunks([0.1, 0.2], 8) == [[0.1, 0.2]]
    assert chunks([], 3) == []
