"""Optional slow tests on real SD1.5 weights: DREAMMOVER_SLOW_MODEL=<hub id, folder or .safetensors> to run.

They check what a random tiny model cannot: real features, real reconstructions, fp16 on CUDA.
"""
import os

import numpy as np
import pytest
import torch

from dreammover import DreamMover, InterpolationConfig

MODEL = os.environ.get("DREAMMOVER_SLOW_MODEL")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not MODEL, reason="set DREAMMOVER_SLOW_MODEL to SD1.5 weights to run")]


@pytest.fixture(scope="module")
def sd15():
    return DreamMover.from_pretrained(MODEL)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def test_features_are_1280_channels_and_flow_follows_a_shift(sd15, dog_pair):
    cfg = InterpolationConfig(lora=False)
    images = sd15.prepare(*dog_pair, cfg)
    shifted = np.roll(images[0], 32, axis=1)  # 32 px = 4 latent pixels to the right
    sd15.use_lora(None, 16)
    z0 = sd15.encode_images([images[0], shifted])
    _, feats = sd15.invert(z0, sd15.encode_prompt(""), cfg)
    assert feats.shape[1] == 1280
    f01, _ = sd15.estimate_flows(feats, [images[0], shifted], tuple(z0.shape[-2:]), cfg)
    assert torch.median(f01[0, 16:48, 8:40]).item() == 4


def test_endpoints_reconstruct_the_inputs(sd15, dog_pair):
    cfg = InterpolationConfig(num_frames=2)
    result = sd15.interpolate(*dog_pair, cfg)
    images = sd15.prepare(*dog_pair, cfg)
    assert len(result.frames) == 4
    assert _psnr(result.frames[0], images[0]) > 20 and _psnr(result.frames[-1], images[1]) > 20
