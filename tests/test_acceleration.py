"""CUDA-only speed-ups are opt-in and leave the CPU path exactly as tested."""
import torch

from dreammover import DreamMover
from dreammover.acceleration import unet_runner


def test_cuda_options_do_not_touch_a_cpu_run(tiny_dm):
    unet = tiny_dm.components.unet
    assert unet_runner(unet, torch.device("cpu"), compile=True, cuda_graphs=True) is None
    fast = DreamMover(tiny_dm.components, compile=True, cuda_graphs=True)
    x, emb = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), tiny_dm.encode_prompt("")
    with torch.no_grad():
        assert torch.equal(fast.eps_model(emb)(x, 301), tiny_dm.eps_model(emb)(x, 301))
