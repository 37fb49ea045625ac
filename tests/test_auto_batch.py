"""frames_per_batch="auto" is planned on the worker that holds the memory (issue #15 item 5): the denoise
task used len(deltas), so on pool workers the memory plan of "auto" never ran. The tiny real model; the
device's free memory is set small the way test_batching does, by its one probe (free_memory_bytes).
"""
from __future__ import annotations

import pytest
import torch

from dreammover import InterpolationConfig
from dreammover import denoise as denoise_mod

FAST = dict(size=64, num_inference_steps=10, inversion_steps=4, feature_step=2, lora=False, num_frames=5)


@pytest.fixture(scope="module")
def state(tiny_dm, dog_pair):
    tiny_dm.use_lora(None, 16)
    cfg = InterpolationConfig(**FAST)
    return tiny_dm.pair_state(tiny_dm.prepare(*dog_pair, cfg), cfg)


def test_auto_is_resolved_from_the_workers_memory_inside_the_denoise_task(tiny_dm, state, monkeypatch):
    from dreammover_tasks.denoise import denoise_fitting

    cfg = InterpolationConfig(**FAST)
    deltas = cfg.deltas
    assert cfg.frames_per_batch == "auto" and len(deltas) == 5
    whole, batch = denoise_fitting(tiny_dm, state, deltas, cfg, None)
    assert batch == 5  # plenty of memory: one batch

    latent_hw = tuple(state.z_T.shape[-2:])
    image = (denoise_mod._ACTIVATION_FACTOR * tiny_dm.components.unet.config.block_out_channels[0]
             * latent_hw[0] * latent_hw[1] * 4)
    monkeypatch.setattr(denoise_mod, "free_memory_bytes", lambda device: 5 * image)  # room for 3 frames
    split, batch = denoise_fitting(tiny_dm, state, deltas, cfg, None)
    assert batch == 3, "the memory plan of 'auto' did not run on the worker"
    assert torch.allclose(split, whole, atol=1e-4)  # batching never changes the frames
    # A number is taken as it is.
    assert denoise_fitting(tiny_dm, state, deltas, cfg.model_copy(update={"frames_per_batch": 2}), None)[1] == 2
