"""DDIM inversion and sampling (DESIGN §3 step 3, Eq. 2-3) checked by hand with a stub eps model."""
import math

import pytest
import torch

from dreammover.ddim import DDIMSchedule, ddim_invert, ddim_inversion_step, ddim_step, predict_x0
from method_stubs import StubEps, sd15_alpha_bar, sd15_scheduler

AB = sd15_alpha_bar()


@pytest.fixture(scope="module")
def sched():
    return DDIMSchedule.from_scheduler(sd15_scheduler(), 50)


def test_schedule_layout_and_alpha_bar_lookup(sched):
    assert sched.step_ratio == 20
    assert sched.timesteps == tuple(range(981, 0, -20))
    assert all(type(t) is int for t in sched.timesteps)
    assert torch.allclose(sched.alphas_cumprod, AB, rtol=1e-6)
    # t < 0 (the step before t=1) uses alpha-bar_0 because set_alpha_to_one is False
    assert sched.alpha_bar(-19) == pytest.approx(float(AB[0]), rel=1e-6)
    assert sched.alpha_bar(581) == pytest.approx(float(AB[581]), rel=1e-6)
    ten = DDIMSchedule.from_scheduler(sd15_scheduler(), 10)
    assert ten.step_ratio == 100 and ten.timesteps == (901, 801, 701, 601, 501, 401, 301, 201, 101, 1)
    assert ten.inversion_timesteps(4) == [1, 101, 201, 301]
    assert ten.denoising_timesteps(4) == [301, 201, 101, 1]


def test_set_alpha_to_one_gives_one_before_t0_and_alpha_bar_0_at_t0():
    s = DDIMSchedule.from_scheduler(sd15_scheduler(set_alpha_to_one=True), 50)
    assert s.final_alpha_cumprod == 1.0 and s.alpha_bar(-19) == 1.0 and s.alpha_bar(-1) == 1.0
    assert s.alpha_bar(0) == pytest.approx(float(AB[0]), rel=1e-6)


def test_one_inversion_step_by_hand(sched):
    # DESIGN §3 step 3 from t_prev = 1 to t = 21: x0 = (x - sqrt(1-ab_1) eps)/sqrt(ab_1); z = sqrt(ab_21) x0 + sqrt(1-ab_21) eps
    x, eps = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([0.5, 0.25], dtype=torch.float64)
    a_prev, a_t = float(AB[1]), float(AB[21])
    x0 = (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
    z, pred = ddim_inversion_step(x, eps, 21, sched)
    assert torch.allclose(pred, x0, rtol=1e-6)
    assert torch.allclose(z, math.sqrt(a_t) * x0 + math.sqrt(1 - a_t) * eps, rtol=1e-6)
    # the first step (t=1) starts from t_prev = -19, i.e. alpha-bar_0
    z1, p1 = ddim_inversion_step(x, eps, 1, sched)
    a0, a1 = float(AB[0]), float(AB[1])
    x0_1 = (x - math.sqrt(1 - a0) * eps) / math.sqrt(a0)
    assert torch.allclose(p1, x0_1, rtol=1e-6)
    assert torch.allclose(z1, math.sqrt(a1) * x0_1 + math.sqrt(1 - a1) * eps, rtol=1e-6)


def test_ddim_step_by_hand_with_and_without_given_x0(sched):
    x, eps = torch.tensor([0.7, -0.1], dtype=torch.float64), torch.tensor([-0.3, 0.9], dtype=torch.float64)
    a_t, a_prev = float(AB[581]), float(AB[561])
    x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
    assert torch.allclose(predict_x0(x, eps, a_t), x0, rtol=1e-6)
    assert torch.allclose(ddim_step(x, eps, 581, sched), math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps,
                          rtol=1e-6)
    given = torch.tensor([2.0, 3.0], dtype=torch.float64)
    assert torch.allclose(ddim_step(x, eps, 581, sched, x0=given),
                          math.sqrt(a_prev) * given + math.sqrt(1 - a_prev) * eps, rtol=1e-6)
    # the last step (t=1) lands on alpha-bar_0 (set_alpha_to_one False)
    a_1, a_0 = float(AB[1]), float(AB[0])
    x0_last = (x - math.sqrt(1 - a_1) * eps) / math.sqrt(a_1)
    assert torch.allclose(ddim_step(x, eps, 1, sched), math.sqrt(a_0) * x0_last + math.sqrt(1 - a_0) * eps,
                          rtol=1e-6)


def test_inversion_calls_unet_at_each_target_t_and_follows_eq3(sched):
    stub = StubEps(a=0.3, b=1e-3)
    z0 = torch.linspace(-1, 1, 2 * 4 * 3 * 3, dtype=torch.float64).view(2, 4, 3, 3)
    seen, ticks = [], []

    class Bar:
        def update(self, n):
            ticks.append(n)

    traj = ddim_invert(stub, z0, sched, 30, callback=lambda i, t, x: seen.append((i, t, x.clone())), progress=Bar())
    assert stub.timesteps == list(range(1, 582, 20))            # 1, 21, ..., 581: the UNet runs at t, not t-20
    assert traj.timesteps == stub.timesteps
    assert ticks == [1] * 30
    # hand-rolled Eq. 3 with the same stub
    x, lat, preds = z0, [z0], []
    for t in range(1, 582, 20):
        a_prev = float(AB[t - 20]) if t >= 20 else float(AB[0])
        eps = 0.3 * x + 1e-3 * t
        x0 = (x - math.sqrt(1 - a_prev) * eps) / math.sqrt(a_prev)
        x = math.sqrt(float(AB[t])) * x0 + math.sqrt(1 - float(AB[t])) * eps
        lat.append(x)
        preds.append(x0)
    assert traj.latents.shape == (31, 2, 4, 3, 3) and traj.pred_x0.shape == (30, 2, 4, 3, 3)
    assert torch.allclose(traj.latents, torch.stack(lat), rtol=1e-5, atol=1e-7)
    assert torch.allclose(traj.pred_x0, torch.stack(preds), rtol=1e-5, atol=1e-7)
    assert torch.equal(traj.z_T, traj.latents[30]) and torch.equal(traj.z_T_to_0, traj.pred_x0[29])
    # the UNet always sees the latent the previous step produced
    for k, (_, x_in) in enumerate(stub.calls):
        assert torch.equal(x_in, traj.latents[k])
    # the callback rides along after each step with (steps done, t, z_t): features come from seen[13], t=261
    assert [(i, t) for i, t, _ in seen] == [(k + 1, t) for k, t in enumerate(range(1, 582, 20))]
    assert seen[13][1] == 261 and torch.equal(seen[13][2], traj.latents[14])
