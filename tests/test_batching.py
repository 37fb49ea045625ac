"""frames_per_batch='auto': as many in-between frames per UNet batch as memory holds; frames unchanged by chunking."""
import pytest
import torch

from dreammover import InterpolationConfig
from dreammover import denoise as denoise_mod
from dreammover.denoise import auto_frames_per_batch, chunks, plan_chunks
from dreammover.profiling import StageProfile

FAST = dict(size=64, num_inference_steps=10, inversion_steps=4, feature_step=2, lora=False)


@pytest.fixture(scope="module")
def state(tiny_dm, dog_pair):
    tiny_dm.use_lora(None, 16)
    cfg = InterpolationConfig(**FAST)
    return tiny_dm.pair_state(tiny_dm.prepare(*dog_pair, cfg), cfg)


def test_auto_is_the_default_and_one_chunk_for_the_flow():
    cfg = InterpolationConfig()
    assert cfg.frames_per_batch == "auto"
    assert chunks(cfg.deltas, "auto") == [cfg.deltas]  # the device that runs the chunk sizes it
    assert chunks([0.1, 0.2, 0.3], 2) == [[0.1, 0.2], [0.3]]
    assert chunks([], "auto") == []


def test_auto_fits_the_memory_budget(tiny_dm):
    unet, cpu = tiny_dm.components.unet, torch.device("cpu")
    per_image = auto_frames_per_batch(unet, (8, 8), cpu, torch.float32, budget=10**12)
    assert per_image == denoise_mod.CPU_MAX_FRAMES  # a CPU stays within a sane bound
    # The budget of 12 images at 64x64 latents in fp16: 10 frames beside the two endpoints.
    one = denoise_mod._ACTIVATION_FACTOR * unet.config.block_out_channels[0] * 64 * 64 * 2
    assert auto_frames_per_batch(unet, (64, 64), torch.device("cuda"), torch.float16, budget=12 * one) == 10
    assert auto_frames_per_batch(unet, (64, 64), torch.device("cuda"), torch.float16, budget=one) == 1


def test_auto_on_cpu_denoises_32_frames_in_one_batch(tiny_dm, state):
    """The tiny model at 64 px: one chunk, so both endpoints are denoised once (the image-eval target)."""
    cfg = InterpolationConfig(**FAST, num_frames=32)
    assert plan_chunks(cfg.deltas, "auto", tiny_dm.components.unet, (8, 8), tiny_dm.device, tiny_dm.dtype) \
        == [cfg.deltas]
    profile = StageProfile(tiny_dm.device)
    with profile.stage("denoise"):
        out = tiny_dm.denoise(state, cfg.deltas, cfg, profile)
    assert out.shape[0] == 34
    assert profile.unet_evals["denoise"] == 34 * (cfg.inversion_steps + 1)
    # At the paper's defaults this is 2*80 (LoRA) + 2*30 + 2 (features) + 34*31 = 1116 + 160 image-evals.
    d = InterpolationConfig()
    assert 2 * d.inversion_steps + 2 + (d.num_frames + 2) * (d.inversion_steps + 1) == 1116


def test_auto_chunks_are_balanced_and_do_not_change_frames(tiny_dm, state, monkeypatch):
    deltas = InterpolationConfig(num_frames=5).deltas
    cfg = InterpolationConfig(**FAST, num_frames=5)
    whole = tiny_dm.denoise(state, deltas, cfg.model_copy(update=dict(frames_per_batch=5)))
    unet = tiny_dm.components.unet
    image = denoise_mod._ACTIVATION_FACTOR * unet.config.block_out_channels[0] * 8 * 8 * 4
    monkeypatch.setattr(denoise_mod, "free_memory_bytes", lambda device: 5 * image)  # room for 3 frames
    parts = plan_chunks(deltas, "auto", unet, (8, 8), tiny_dm.device, torch.float32)
    assert [len(p) for p in parts] == [3, 2] and sum(parts, []) == deltas
    split = tiny_dm.denoise(state, deltas, cfg)
    assert torch.allclose(split, whole, atol=1e-4)
