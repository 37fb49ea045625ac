"""The pair's LoRA as the released code runs it: scale 1.0 for inversion/features, 0.8 while denoising,
merged into the weights with a bit-exact way back to the pretrained UNet."""
import numpy as np
import pytest
import torch

from dreammover import InterpolationConfig
from dreammover.lora import add_lora, lora_state_dict, remove_lora
from dreammover.lora_merge import lora_scale, merge_lora, set_lora_scale

# A short schedule keeps this fast; the scale logic does not depend on the number of steps.
FAST = dict(size=64, num_inference_steps=10, inversion_steps=4, feature_step=2)


def _random_lora(unet, rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """A LoRA whose B is not zero (a fitted one would be), without spending a fit on it."""
    add_lora(unet, rank)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    state = lora_state_dict(unet)
    remove_lora(unet)
    return state


def _weights(unet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in unet.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def pair(tiny_dm, dog_pair):
    tiny_dm.use_lora(None, 4)
    return tiny_dm.prepare(*dog_pair, InterpolationConfig(**FAST))


def test_denoise_scale_changes_frames_and_not_the_inversion(tiny_dm, pair):
    unet = tiny_dm.components.unet
    tiny_dm.use_lora(_random_lora(unet), 4)
    released, full = InterpolationConfig(**FAST), InterpolationConfig(**FAST, lora_denoise_scale=1.0)
    assert released.lora_denoise_scale == 0.8 and released.lora_invert_scale == 1.0  # the released defaults
    s08, s10 = tiny_dm.pair_state(pair, released), tiny_dm.pair_state(pair, full)
    for name in ("z_T", "z_T_to_0", "flow01", "flow10"):
        assert torch.equal(getattr(s08, name), getattr(s10, name)), name
    d08 = tiny_dm.denoise(s08, [0.5], released)
    d10 = tiny_dm.denoise(s08, [0.5], full)
    assert (d08 - d10).abs().max() > 1e-3
    # The inversion scale is the one that moves the inversion.
    s05 = tiny_dm.pair_state(pair, InterpolationConfig(**FAST, lora_invert_scale=0.5))
    assert (s05.z_T - s08.z_T).abs().max() > 1e-4
    # ... and denoising at scale 0 is denoising without the LoRA.
    zero = tiny_dm.denoise(s08, [0.5], InterpolationConfig(**FAST, lora_denoise_scale=0.0))
    tiny_dm.use_lora(None, 4)
    plain = tiny_dm.denoise(s08, [0.5], InterpolationConfig(**FAST))
    assert torch.equal(zero, plain)


def test_merge_matches_peft_layers_at_each_scale(tiny_dm):
    unet = tiny_dm.components.unet
    state = _random_lora(unet, seed=1)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = tiny_dm.encode_prompt("").expand(2, -1, -1)
    outs = {}
    for merge in (True, False):
        tiny_dm.use_lora(state, 4, merge=merge)
        for scale in (1.0, 0.8):
            with lora_scale(unet, scale), torch.no_grad():
                outs[merge, scale] = unet(x, 400, encoder_hidden_states=emb).sample
    tiny_dm.use_lora(None, 4)
    for scale in (1.0, 0.8):
        assert torch.allclose(outs[True, scale], outs[False, scale], atol=1e-5)
    assert (outs[True, 1.0] - outs[True, 0.8]).abs().max() > 1e-3


def test_switching_loras_and_scales_restores_weights_bit_exactly(tiny_dm):
    unet = tiny_dm.components.unet
    tiny_dm.use_lora(None, 4)
    pretrained = _weights(unet)
    a, b = _random_lora(unet, seed=2), _random_lora(unet, seed=3)
    tiny_dm.use_lora(a, 4)
    merged_a = _weights(unet)
    assert not _same(merged_a, pretrained) and merged_a.keys() == pretrained.keys()  # no adapter layers
    assert set_lora_scale(unet, 0.8) == 1.0
    assert not _same(_weights(unet), merged_a)
    set_lora_scale(unet, 1.0)
    assert _same(_weights(unet), merged_a)  # re-merging starts from W0: same weights every time
    tiny_dm.use_lora(b, 4)  # another pair's cached LoRA
    assert _same(lora_state_dict(unet), b)
    tiny_dm.use_lora(a, 4)
    assert _same(_weights(unet), merged_a)
    tiny_dm.use_lora(None, 4)
    assert _same(_weights(unet), pretrained)


def test_remove_lora_leaves_no_peft_wrappers(tiny_dm):
    from peft.tuners.tuners_utils import BaseTunerLayer

    unet = tiny_dm.components.unet
    keys = set(unet.state_dict())
    state = _random_lora(unet)
    for attach in (lambda: add_lora(unet, 4), lambda: tiny_dm.use_lora(state, 4, merge=False)):
        attach()
        assert sum(isinstance(m, BaseTunerLayer) for m in unet.modules()) == 128
        remove_lora(unet)
        assert not any(isinstance(m, BaseTunerLayer) for m in unet.modules())
        assert set(unet.state_dict()) == keys and not getattr(unet, "peft_config", None)


def test_merge_rejects_weights_of_another_unet(tiny_dm):
    unet = tiny_dm.components.unet
    state = _random_lora(unet)
    with pytest.raises(ValueError, match="do not fit"):
        merge_lora(unet, state, rank=8)
    bad = {k.replace("attn1", "attn9"): v for k, v in state.items()}
    with pytest.raises(ValueError, match="do not fit"):
        merge_lora(unet, bad, rank=4)
    remove_lora(unet)


def test_fit_input_is_a_posterior_sample_of_a_random_square_view(tiny_dm):
    """lora_fit_input='sampled_views' (released: latent_dist.sample() of Resize+RandomCrop), teacher-forced."""
    from dreammover.images import to_tensor

    rng = np.random.default_rng(0)
    wide = [rng.integers(0, 256, (64, 128, 3), dtype=np.uint8) for _ in range(2)]
    square = [im[:, :64] for im in wide]
    cfg, scale = InterpolationConfig(size=128, seed=3), tiny_dm.components.vae_scale
    assert tiny_dm.latent_sampler(square, cfg.model_copy(update=dict(lora_fit_input="posterior_mean"))) is None

    mean, std = tiny_dm.encode_posterior(square)
    got = tiny_dm.latent_sampler(square, cfg)(torch.Generator().manual_seed(7))
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(got, (mean + std * noise) * scale, atol=1e-6)
    assert (got - mean * scale).abs().max() > 1e-3  # a sample, not the posterior mean

    sampler, crops = tiny_dm.latent_sampler(wide, cfg), torch.Generator().manual_seed(cfg.seed)
    x = to_tensor(wide)
    for draw in range(3):
        gen = torch.Generator().manual_seed(draw)
        got = sampler(gen)
        i, j = (int(torch.randint(0, n, (), generator=crops)) for n in (1, 65))
        m, s = tiny_dm.encode_posterior(x[..., i:i + 64, j:j + 64])
        noise = torch.randn(m.shape, generator=torch.Generator().manual_seed(draw))
        assert got.shape == (2, 4, 8, 8)
        assert torch.allclose(got, (m + s * noise) * scale, atol=1e-6)
