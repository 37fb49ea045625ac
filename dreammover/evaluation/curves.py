"""Fig. 5c: high-frequency energy of an in-between frame over the denoising steps, two-level vs direct fusion."""
from __future__ import annotations

import numpy as np
import torch

from ..config import InterpolationConfig
from ..ddim import predict_x0
from .metrics import high_frequency_energy

FUSIONS = ("two_level", "direct")


@torch.no_grad()
def hf_energy_curves(dm, image0, image1, config: InterpolationConfig, delta: float = 0.5,
                     lora_active: bool = False) -> dict[str, list]:
    """For each fusion: [(t, ratio)] per denoising step, ratio = HF energy of the step's clean estimate / the inputs'.

    One LoRA fit and one inversion serve both fusions (they share steps 1-5); the frame's clean estimate
    z_{t->0} is decoded at every step, as the paper's curve tracks the detail of the emerging image.
    lora_active: the pair's LoRA is still loaded from interpolate() on the same pair and config (saves a refit).
    """
    images = dm.prepare(image0, image1, config)
    # lora_active: the pair's LoRA from interpolate() is still on the UNet.
    state = dm.fit_pair(images, config, lora="active" if lora_active else "fit").state
    schedule = dm.schedule(config)
    ref = float(np.mean([high_frequency_energy(im) for im in images]))
    eps = dm.eps_model(state.to(dm.device, dm.dtype).text_emb)
    curves: dict[str, list] = {}
    for fusion in FUSIONS:
        cfg = config.model_copy(update={"fusion": fusion, "num_frames": 1, "frames_per_batch": 1})
        steps: list[tuple[int, torch.Tensor]] = []
        dm.denoise(state, [delta], cfg, on_step=lambda t, x: steps.append((t, x[2:3].clone())))
        curve = []
        # Estimated after denoising, outside the reference-attention context: a plain UNet pass per step.
        for t, x in steps:
            t_now = t - schedule.step_ratio  # the callback's latent is the one *after* the step at t
            x0 = x if t_now < 0 else predict_x0(x, eps(x, t_now), schedule.alpha_bar(t_now))
            frame = dm.decode(x0)[0]
            curve.append((int(t), high_frequency_energy(frame) / ref if ref > 0 else float("nan")))
        curves[fusion] = curve
    dm.use_lora(None, config.lora_rank)  # leave the model as loaded for the next pair
    return curves
