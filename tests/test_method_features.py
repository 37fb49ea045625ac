"""Diffusion features (DESIGN §3 step 4): the output of up_blocks[1], captured by a hook at t=261."""
import pytest
import torch

from dreammover import InterpolationConfig
from dreammover.features import extract_features
from method_stubs import tiny_unet


class _Scale(torch.nn.Module):
    def __init__(self, k: float, as_tuple: bool = False):
        super().__init__()
        self.k, self.as_tuple = k, as_tuple

    def forward(self, x):
        y = x * self.k
        return (y, -y) if self.as_tuple else y


class _ChainUNet(torch.nn.Module):
    """up_blocks in a row, each scaling by a different factor, so every block's output is distinguishable."""

    def __init__(self):
        super().__init__()
        self.up_blocks = torch.nn.ModuleList([_Scale(2.0), _Scale(3.0), _Scale(5.0, as_tuple=True), _Scale(7.0)])

    def forward(self, x):
        for block in self.up_blocks:
            x = block(x)
            x = x[0] if isinstance(x, tuple) else x
        return x


def test_default_hook_is_the_second_up_block_and_is_removed_afterwards():
    unet, x = _ChainUNet(), torch.ones(1, 1, 2, 2)
    assert torch.equal(extract_features(lambda: unet(x), unet), x * 6.0)  # after blocks 0 and 1 only
    assert torch.equal(extract_features(lambda: unet(x), unet, 0), x * 2.0)
    assert torch.equal(extract_features(lambda: unet(x), unet, 2), x * 30.0)  # tuple output: its first item
    assert all(not b._forward_hooks for b in unet.up_blocks)


def test_last_pass_wins_hook_removed_on_error_and_missing_block_is_reported():
    unet = _ChainUNet()
    got = extract_features(lambda: (unet(torch.ones(1, 1, 1, 1)), unet(torch.full((1, 1, 1, 1), 2.0))), unet)
    assert got.item() == 12.0

    def boom():
        unet(torch.ones(1, 1, 1, 1))
        raise KeyError("unet failed")

    with pytest.raises(KeyError):
        extract_features(boom, unet)
    assert not unet.up_blocks[1]._forward_hooks
    with pytest.raises(RuntimeError, match="up_blocks\\[1\\]"):
        extract_features(lambda: None, unet)


def test_features_are_detached():
    unet = _ChainUNet()
    x = torch.ones(1, 1, 1, 1, requires_grad=True)
    assert not extract_features(lambda: unet(x), unet).requires_grad


def test_real_unet_features_equal_up_block_1_output_at_half_latent_size():
    unet = tiny_unet()
    x, emb = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(2, 77, 32)
    outs = {}
    hooks = [unet.up_blocks[i].register_forward_hook(lambda m, a, o, i=i: outs.__setitem__(i, o)) for i in (0, 1)]
    with torch.no_grad():
        feats = extract_features(lambda: unet(x, 261, encoder_hidden_states=emb), unet)
    for h in hooks:
        h.remove()
    # SD1.5's layout: up_blocks[0] and [1] have the same width, but only [1] sits at 1/2 of the latent size
    assert outs[0].shape[1] == outs[1].shape[1]
    assert feats.shape == (2, outs[1].shape[1], 4, 4) and outs[0].shape[-1] == 2
    assert torch.equal(feats, outs[1])


def test_pipeline_takes_features_after_14_inversion_steps_at_t261(tiny_dm):
    """The UNet sees t = 1, 21, ..., 261, then the hooked pass at 261 on z_261, then 281, ..., 581."""
    dm = tiny_dm
    dm.use_lora(None, 16)
    unet = dm.components.unet
    cfg = InterpolationConfig(size=64)
    emb = dm.encode_prompt("")
    z0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    calls, feats_by_hook = [], []
    pre = unet.register_forward_pre_hook(lambda m, args: calls.append((int(args[1]), args[0].clone())))
    post = unet.up_blocks[1].register_forward_hook(lambda m, a, o: feats_by_hook.append(o.clone()))
    try:
        traj, feats = dm.invert(z0, emb, cfg)
    finally:
        pre.remove()
        post.remove()
    ts = [t for t, _ in calls]
    assert ts == list(range(1, 262, 20)) + [261] + list(range(281, 582, 20))
    assert torch.equal(calls[14][1], traj.latents[14])      # the feature pass runs on z_261
    assert torch.equal(feats, feats_by_hook[14])
    assert feats.shape == (2, feats_by_hook[14].shape[1], 4, 4)
