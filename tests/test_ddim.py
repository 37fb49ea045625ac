"""DDIM arithmetic against diffusers' scheduler, the SD1.5 timestep layout, and inversion round trips."""
import torch
from diffusers import DDIMScheduler

from dreammover import InterpolationConfig
from dreammover.ddim import DDIMSchedule, ddim_invert, ddim_step
from dreammover.denoise import EpsModel


def sd15_scheduler():
    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def test_timestep_layout_matches_design():
    s = DDIMSchedule.from_scheduler(sd15_scheduler(), 50)
    inv = s.inversion_timesteps(30)
    assert inv[0] == 1 and inv[13] == 261 and inv[-1] == 581 and len(inv) == 30
    den = s.denoising_timesteps(30)
    assert den[0] == 581 and den[-1] == 1 and den == sorted(inv, reverse=True)
    assert s.alpha_bar(-19) == s.alpha_bar(0)  # set_alpha_to_one False


def test_ddim_step_matches_diffusers_scheduler():
    sched = sd15_scheduler()
    s = DDIMSchedule.from_scheduler(sched, 50)
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    for t in (981, 581, 21, 1):
        ours = ddim_step(x, eps, t, s)
        ref = sched.step(eps, t, x, eta=0.0).prev_sample
        assert torch.allclose(ours, ref, atol=1e-5), t


def test_inversion_then_denoising_with_exact_eps_is_identity():
    # With a noise model that is constant in x, DDIM inversion and sampling are exact inverses.
    s = DDIMSchedule.from_scheduler(sd15_scheduler(), 50)
    g = torch.Generator().manual_seed(2)
    z0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    traj = ddim_invert(lambda x, t: eps, z0, s, 30)
    assert traj.latents.shape[0] == 31 and traj.pred_x0.shape[0] == 30
    x = traj.z_T
    for t in s.denoising_timesteps(30):
        x = ddim_step(x, eps, t, s)
    assert torch.allclose(x, z0, atol=1e-4)


def test_inversion_round_trip_with_tiny_unet(tiny_dm):
    dm = tiny_dm
    dm.use_lora(None, 16)
    cfg = InterpolationConfig(size=64)
    s = dm.schedule(cfg)
    emb = dm.encode_prompt("")
    eps = EpsModel(dm.components.unet, emb)
    z0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.8
    with torch.no_grad():
        traj = ddim_invert(eps, z0, s, 30)
        x = traj.z_T
        for t in s.denoising_timesteps(30):
            x = ddim_step(x, eps(x, t), t, s)
    err = (x - z0).abs().mean().item()
    assert err < 0.05 * z0.abs().mean().item(), err
    # and the trajectory really moved away from z0
    assert (traj.z_T - z0).abs().mean() > 0.3
