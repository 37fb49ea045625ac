"""Which modules the pair's LoRA wraps (DESIGN §3 step 1), and that attaching, loading and removing it behave."""
import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock

from dreammover.lora import ADAPTER, add_lora, fit_lora, load_lora, lora_parameters, lora_state_dict, read_lora, \
    remove_lora, save_lora
from method_stubs import sd15_alpha_bar, tiny_unet

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def _wrapped(unet) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {n for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer) and ADAPTER in m.lora_A}


def _expected(unet) -> set[str]:
    """Derived from the UNet's structure: q/k/v/out of self- and cross-attention of every transformer block."""
    blocks = [n for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]
    return {f"{b}.{attn}.{p}" for b in blocks for attn in ("attn1", "attn2") for p in PROJECTIONS}


def _out(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, emb = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 77, 32, generator=g)
    with torch.no_grad():
        return unet(x, 300, encoder_hidden_states=emb).sample


def _perturb(unet, seed=1):
    g = torch.Generator().manual_seed(seed)
    for p in lora_parameters(unet):
        p.data = 0.3 * torch.randn(p.shape, generator=g)


@pytest.fixture
def unet():
    return tiny_unet()


def test_lora_wraps_exactly_q_k_v_out_of_both_attentions_in_all_16_blocks_at_scale_1(unet):
    add_lora(unet, 4)
    want = _expected(unet)
    assert len(want) == 16 * 2 * 4                               # SD1.5's layout: 16 transformer blocks
    assert _wrapped(unet) == want
    named = dict(unet.named_modules())
    for n in want:
        layer = named[n]
        assert layer.r[ADAPTER] == 4 and layer.lora_A[ADAPTER].weight.shape[0] == 4
        assert layer.scaling[ADAPTER] == 1.0                       # as the released LoRA processors at scale 1
    a = torch.cat([named[n].lora_A[ADAPTER].weight.flatten() for n in want])
    assert abs(a.std().item() - 1 / 4) < 0.02                      # peft's "gaussian" init: A ~ N(0, 1/r)
    add_lora(unet, 8)                                              # a second attach replaces the first
    named = dict(unet.named_modules())                             # remove_lora unwraps: the layers are new objects
    assert _wrapped(unet) == want and all(named[n].r[ADAPTER] == 8 for n in want)


def test_fresh_adapter_has_no_effect_until_trained_and_each_projection_matters(unet):
    base = _out(unet)
    add_lora(unet, 4)
    assert torch.equal(_out(unet), base)                           # B starts at zero
    named = dict(unet.named_modules())
    block = next(n for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock))
    for attn in ("attn1", "attn2"):
        for p in PROJECTIONS:
            lb = named[f"{block}.{attn}.{p}"].lora_B[ADAPTER].weight
            lb.data.fill_(0.5)
            assert (_out(unet) - base).abs().max() > 1e-4, (attn, p)
            lb.data.zero_()


def test_state_dict_load_and_remove_round_trip(unet, tmp_path):
    base = _out(unet)
    add_lora(unet, 4)
    _perturb(unet)
    fitted = _out(unet)
    state = lora_state_dict(unet)
    assert len(state) == 2 * 128 and all("lora_A" in k or "lora_B" in k for k in state)
    assert all(v.dtype == torch.float32 and v.device.type == "cpu" and v.is_contiguous() for v in state.values())
    remove_lora(unet)
    assert torch.equal(_out(unet), base)                           # the pretrained UNet again
    assert ADAPTER not in (getattr(unet, "peft_config", None) or {})
    remove_lora(unet)                                              # harmless when there is none

    path = save_lora(state, tmp_path / "pair.safetensors", 4)
    loaded, rank = read_lora(path)
    assert rank == 4 and loaded.keys() == state.keys()
    other = tiny_unet()
    load_lora(other, loaded, rank)
    assert _wrapped(other) == _expected(other)
    assert torch.allclose(_out(other), fitted, atol=1e-6)
    assert not any(p.requires_grad for p in other.parameters())


def test_read_lora_defaults_to_rank_16_and_load_refuses_foreign_weights(unet, tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    assert read_lora(tmp_path / "bare.safetensors")[1] == 16
    with pytest.raises(ValueError, match="do not fit"):
        load_lora(unet, {"down_blocks.9.attn1.to_q.lora_A.weight": torch.zeros(4, 32)}, 4)


def test_fit_trains_only_the_adapter_reports_each_step_and_leaves_it_active(unet):
    base_weights = {k: v.clone() for k, v in unet.state_dict().items()}
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    emb = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))   # cross-attention K/V get a gradient
    seen = []
    state, losses = fit_lora(unet, z, emb, sd15_alpha_bar().float(), rank=4, lr=1e-2, steps=3, seed=0,
                             on_step=lambda i, loss: seen.append((i, loss)))
    assert len(losses) == 3 and seen == list(enumerate(losses)) and all(0 < v < 10 for v in losses)
    assert not unet.training and not any(p.requires_grad for p in unet.parameters())
    strip = lambda k: k.replace(".base_layer", "")                 # noqa: E731  (peft wraps x as x.base_layer)
    for k, v in unet.state_dict().items():
        if "lora_" not in k:
            assert torch.equal(v, base_weights[strip(k)]), k
    # every B moved off zero, except q/k of the middle block's self-attention: at 1x1 latent size it attends
    # to a single token, so the softmax is 1 whatever q and k are and they get no gradient
    still = {k for k, v in state.items() if "lora_B" in k and v.abs().sum() == 0}
    assert still <= {f"mid_block.attentions.0.transformer_blocks.0.attn1.{p}.lora_B.weight" for p in ("to_q", "to_k")}
    other = tiny_unet()
    load_lora(other, state, 4)
    assert torch.allclose(_out(other), _out(unet), atol=1e-6)    # the returned weights are the active adapter
    again, _ = fit_lora(tiny_unet(), z, emb, sd15_alpha_bar().float(), rank=4, lr=1e-2, steps=3, seed=0)
    assert all(torch.equal(state[k], again[k]) for k in state)
    slower, _ = fit_lora(tiny_unet(), z, emb, sd15_alpha_bar().float(), rank=4, lr=1e-3, steps=3, seed=0)
    assert any(not torch.allclose(state[k], slower[k]) for k in state)
