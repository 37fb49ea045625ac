"""LoRA fitted on the pair (Sec. 3.4): only adapter weights move, the loss falls, save/load reproduces."""
import torch
import torch.nn.functional as F

from dreammover import InterpolationConfig
from dreammover.lora import lora_parameters, lora_state_dict, read_lora, save_lora


def _fixed_loss(unet, z0, emb, alphas, seed=123, n=12):
    g = torch.Generator().manual_seed(seed)
    total = 0.0
    with torch.no_grad():
        for _ in range(n):
            noise = torch.randn(z0.shape, generator=g)
            t = torch.randint(0, 1000, (z0.shape[0],), generator=g)
            a = alphas[t].view(-1, 1, 1, 1).float()
            pred = unet(a.sqrt() * z0 + (1 - a).sqrt() * noise, t, encoder_hidden_states=emb.expand(2, -1, -1)).sample
            total += F.mse_loss(pred, noise).item()
    return total / n


def test_lora_fit_changes_only_adapter_and_lowers_loss(tiny_dm, dog_pair, tmp_path):
    dm = tiny_dm
    dm.use_lora(None, 16)
    unet = dm.components.unet
    cfg = InterpolationConfig(size=64, lora_steps=60, lora_lr=2e-3)
    images = dm.prepare(*dog_pair, cfg)
    z0, emb = dm.encode_images(images), dm.encode_prompt("")
    alphas = dm.components.scheduler.alphas_cumprod
    base_before = {k: v.clone() for k, v in unet.state_dict().items()}
    loss_before = _fixed_loss(unet, z0, emb, alphas)

    state, losses = dm.fit_lora(z0, emb, cfg, images=images)
    assert len(losses) == 60
    # The fitted adapter is merged into the projections: no adapter layers, only the 128 targets moved.
    assert not lora_parameters(unet) and unet.state_dict().keys() == base_before.keys()
    moved = {k for k, v in unet.state_dict().items() if not torch.equal(v, base_before[k])}
    assert moved and all(k.endswith(("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")) for k in moved)
    assert any(p.abs().sum() > 0 for n, p in state.items() if "lora_B" in n)  # B starts at zero
    assert all(torch.equal(v, state[k]) for k, v in lora_state_dict(unet).items())
    loss_after = _fixed_loss(unet, z0, emb, alphas)
    assert loss_after < loss_before

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        fitted = unet(x, 300, encoder_hidden_states=emb.expand(2, -1, -1)).sample
    path = save_lora(state, tmp_path / "lora.safetensors", cfg.lora_rank)
    dm.use_lora(None, 16)
    assert all(torch.equal(v, base_before[k]) for k, v in unet.state_dict().items())  # bit-exact restore
    with torch.no_grad():
        plain = unet(x, 300, encoder_hidden_states=emb.expand(2, -1, -1)).sample
    loaded, rank = read_lora(path)
    assert rank == 16
    dm.use_lora(loaded, rank)
    with torch.no_grad():
        again = unet(x, 300, encoder_hidden_states=emb.expand(2, -1, -1)).sample
    dm.use_lora(loaded, rank, merge=False)  # the same LoRA as peft layers, unmerged
    with torch.no_grad():
        layered = unet(x, 300, encoder_hidden_states=emb.expand(2, -1, -1)).sample
    dm.use_lora(None, 16)
    assert (fitted - plain).abs().max() > 1e-4
    assert torch.equal(again, fitted)
    assert torch.allclose(layered, fitted, atol=1e-5)


def test_lora_fit_is_reproducible_for_a_seed(tiny_dm, dog_pair):
    """A refit after a cache miss must give the same adapter: init and training draws depend on the seed only."""
    dm = tiny_dm
    cfg = InterpolationConfig(size=64, lora_steps=3)
    images = dm.prepare(*dog_pair, cfg)
    z0, emb = dm.encode_images(images), dm.encode_prompt("")
    a, _ = dm.fit_lora(z0, emb, cfg, images=images)
    torch.randn(100)  # disturb the global RNG between the fits
    b, _ = dm.fit_lora(z0, emb, cfg, images=images)
    c, _ = dm.fit_lora(z0, emb, InterpolationConfig(size=64, lora_steps=3, seed=1), images=images)
    dm.use_lora(None, 16)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
