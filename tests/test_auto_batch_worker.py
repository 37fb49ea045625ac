"""frames_per_batch="auto" is planned on the worker that denoises the chunk (issue #15 item 5), not taken as the whole chunk."""
from __future__ import annotations

import torch

from dreammover import InterpolationConfig
from dreammover.denoise import CPU_MAX_FRAMES, plan_chunks
from dreammover.profiling import StageProfile
from tasks.denoise import denoise_fitting

FAST = dict(size=64, lora_steps=2, lora_rank=4, num_inference_steps=10, inversion_steps=6, feature_step=3)


def test_auto_chunk_larger_than_the_memory_plan_is_denoised_in_planned_batches(tiny_dm, dog_pair):
    # More frames than a CPU batch may hold: the plan splits them, one batch of all of them does not.
    frames = CPU_MAX_FRAMES + 6
    config = InterpolationConfig(**FAST, num_frames=frames, frames_per_batch="auto")
    pair = tiny_dm.pair_state(tiny_dm.prepare(*dog_pair, config), config)
    deltas = config.deltas
    planned = plan_chunks(deltas, "auto", tiny_dm.components.unet, tuple(pair.z_T.shape[-2:]), tiny_dm.device,
                          tiny_dm.dtype)
    assert len(planned) > 1, "the planner should split this chunk on a CPU"

    batches = []
    original = tiny_dm.denoise

    def record(state, part, cfg, profile=None, **kw):
        batches.append(cfg.frames_per_batch)
        return original(state, part, cfg, profile, **kw)

    tiny_dm.denoise = record  # an instance attribute: the session's model is left as it was below
    try:
        latents, batch = denoise_fitting(tiny_dm, pair, deltas, config, StageProfile(tiny_dm.device))
    finally:
        del tiny_dm.denoise
    assert batch == max(len(p) for p in planned) < len(deltas)
    assert batches == [batch]
    assert latents.shape[0] == 2 + len(deltas)
    assert torch.isfinite(latents).all()
