"""DDIM sampling (Eq. 2) and inversion (Eq. 3) on a diffusers scheduler's alphas, keeping the whole trajectory."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class DDIMSchedule:
    """alpha-bar lookup and the S-step timestep list of a DDIMScheduler (set_alpha_to_one respected)."""

    alphas_cumprod: torch.Tensor  # float64, CPU
    timesteps: tuple[int, ...]    # descending, e.g. 981, 961, ..., 1 for SD1.5 with 50 steps
    step_ratio: int
    final_alpha_cumprod: float

    @classmethod
    def from_scheduler(cls, scheduler, num_inference_steps: int) -> "DDIMSchedule":
        scheduler.set_timesteps(num_inference_steps)
        ac = scheduler.alphas_cumprod.to(torch.float64).cpu()
        final = 1.0 if scheduler.config.set_alpha_to_one else float(ac[0])
        return cls(ac, tuple(int(t) for t in scheduler.timesteps),
                   scheduler.config.num_train_timesteps // num_inference_steps, final)

    def alpha_bar(self, t: int) -> float:
        return float(self.alphas_cumprod[t]) if t >= 0 else self.final_alpha_cumprod

    def inversion_timesteps(self, steps: int) -> list[int]:
        """Ascending targets of the first `steps` inversion steps (1, 21, ..., 581 for 30 of 50)."""
        return list(reversed(self.timesteps))[:steps]

    def denoising_timesteps(self, steps: int) -> list[int]:
        """Descending timesteps of the last `steps` denoising steps (581, ..., 1 for 30 of 50)."""
        return list(self.timesteps[len(self.timesteps) - steps:])


def predict_x0(x: torch.Tensor, eps: torch.Tensor, alpha_bar: float) -> torch.Tensor:
    """Clean-latent prediction z_{t->0} = (z_t - sqrt(1-abar) eps) / sqrt(abar)."""
    return (x - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar ** 0.5


def ddim_step(x: torch.Tensor, eps: torch.Tensor, t: int, schedule: DDIMSchedule,
              x0: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 2 (eta 0): z_{t-1} = sqrt(abar_prev) x0 + sqrt(1-abar_prev) eps; x0 from eps unless given (first fused step)."""
    if x0 is None:
        x0 = predict_x0(x, eps, schedule.alpha_bar(t))
    a_prev = schedule.alpha_bar(t - schedule.step_ratio)
    return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


def ddim_inversion_step(x: torch.Tensor, eps: torch.Tensor, t: int, schedule: DDIMSchedule):
    """Eq. 3, Eq. 2 run backwards from t - step_ratio to t; returns (z_t, z_{t->0})."""
    x0 = predict_x0(x, eps, schedule.alpha_bar(t - schedule.step_ratio))
    a_t = schedule.alpha_bar(t)
    return a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps, x0


@dataclass
class InversionTrajectory:
    """z_t after every inversion step (index 0 is the clean latent) and the z_{t->0} of each step."""

    timesteps: list[int]
    latents: torch.Tensor  # [steps+1, B, C, H, W]
    pred_x0: torch.Tensor  # [steps, B, C, H, W]

    @property
    def z_T(self) -> torch.Tensor:
        return self.latents[-1]

    @property
    def z_T_to_0(self) -> torch.Tensor:
        return self.pred_x0[-1]


def ddim_invert(eps_fn: EpsFn, z0: torch.Tensor, schedule: DDIMSchedule, steps: int,
                callback: Callable[[int, int, torch.Tensor], None] | None = None,
                progress=None) -> InversionTrajectory:
    """Eq. 3 for `steps` steps; callback(done_steps, t, z_t) lets feature extraction ride along."""
    ts = schedule.inversion_timesteps(steps)
    latents, preds, x = [z0], [], z0
    for i, t in enumerate(ts):
        x, x0 = ddim_inversion_step(x, eps_fn(x, t), t, schedule)
        latents.append(x)
        preds.append(x0)
        if callback is not None:
            callback(i + 1, t, x)
        if progress is not None:
            progress.update(1)
    return InversionTrajectory(ts, torch.stack(latents), torch.stack(preds))
