"""Reference attention (Eq. 9-10): processor semantics, chunk independence, LoRA compatibility."""
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dreammover import InterpolationConfig
from dreammover.attention import ReferenceAttnProcessor, reference_attention, self_attention_layers


@pytest.fixture
def attn():
    torch.manual_seed(0)
    return Attention(query_dim=16, heads=2, dim_head=8).eval()


def _plain(attn, x):
    attn.set_processor(AttnProcessor2_0())
    return attn(x)


def test_identical_endpoints_and_frame_give_plain_self_attention(attn):
    x = torch.randn(1, 10, 16)
    plain = _plain(attn, x)
    attn.set_processor(ReferenceAttnProcessor())
    out = attn(x.repeat(3, 1, 1))
    for row in range(3):
        assert torch.allclose(out[row], plain[0], atol=1e-5)


def test_frame_attends_to_concatenated_endpoint_keys(attn):
    x0, x1, f = torch.randn(1, 6, 16), torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    attn.set_processor(ReferenceAttnProcessor())
    with torch.no_grad():
        out = attn(torch.cat([x0, x1, f]))
        # the endpoints: ordinary self-attention
        assert torch.allclose(out[0], _plain(attn, x0)[0], atol=1e-5)
        # the frame: own queries, keys/values of [x0; x1]
        q = attn.to_q(f).view(1, 6, 2, 8).transpose(1, 2)
        ref = torch.cat([x0, x1], dim=1)
        k = attn.to_k(ref).view(1, 12, 2, 8).transpose(1, 2)
        v = attn.to_v(ref).view(1, 12, 2, 8).transpose(1, 2)
        manual = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, 6, 16)
        manual = attn.to_out[0](manual)
    assert torch.allclose(out[2], manual[0], atol=1e-5)
    # and it is not what plain self-attention of the frame gives
    assert not torch.allclose(out[2], _plain(attn, f)[0], atol=1e-3)


def test_context_sets_last_six_up_blocks_and_restores(tiny_dm):
    unet = tiny_dm.components.unet
    layers = self_attention_layers(unet)
    assert len(layers) == 16
    names = {id(m): n for n, m in unet.named_modules()}
    before = [type(layer.processor) for layer in layers]
    with reference_attention(unet, 6) as active:
        assert [names[id(m)].split(".")[:2] for m in active] == [["up_blocks", "2"]] * 3 + [["up_blocks", "3"]] * 3
        assert all(isinstance(m.processor, ReferenceAttnProcessor) for m in active)
        assert not any(isinstance(m.processor, ReferenceAttnProcessor) for m in layers[:10])
    assert [type(layer.processor) for layer in layers] == before


@pytest.fixture(scope="module")
def dog_state(tiny_dm, dog_pair):
    cfg = InterpolationConfig(size=64, lora=False)
    tiny_dm.use_lora(None, 16)
    images = tiny_dm.prepare(*dog_pair, cfg)
    return tiny_dm.pair_state(images, cfg)


def test_frames_do_not_depend_on_chunking(tiny_dm, dog_state):
    deltas = [0.2, 0.4, 0.6, 0.8]
    tiny_dm.use_lora(None, 16)
    one = tiny_dm.denoise(dog_state, deltas, InterpolationConfig(size=64, frames_per_batch=1))
    all_ = tiny_dm.denoise(dog_state, deltas, InterpolationConfig(size=64, frames_per_batch=4))
    assert one.shape == all_.shape == (6, 4, 8, 8)
    assert torch.allclose(one, all_, atol=1e-4)


def test_reference_attention_switch_changes_frames_not_endpoints(tiny_dm, dog_state):
    tiny_dm.use_lora(None, 16)
    on = tiny_dm.denoise(dog_state, [0.5], InterpolationConfig(size=64))
    off = tiny_dm.denoise(dog_state, [0.5], InterpolationConfig(size=64, reference_attention=False))
    assert torch.allclose(on[:2], off[:2], atol=1e-5)
    assert (on[2] - off[2]).abs().max() > 1e-3


def test_processor_runs_through_peft_lora_layers(tiny_dm):
    from dreammover.lora import add_lora, lora_parameters

    unet = tiny_dm.components.unet
    add_lora(unet, 4)
    try:
        for p in lora_parameters(unet):
            p.data.normal_(0, 0.5)
        x = torch.randn(3, 4, 8, 8)
        emb = tiny_dm.encode_prompt("").expand(3, -1, -1)
        with torch.no_grad(), reference_attention(unet, 6) as active:
            assert type(active[0].to_q).__module__.startswith("peft")
            with_lora = unet(x, 500, encoder_hidden_states=emb).sample
            tiny_dm.use_lora(None, 4)
            without = unet(x, 500, encoder_hidden_states=emb).sample
        assert (with_lora - without).abs().max() > 1e-4
    finally:
        tiny_dm.use_lora(None, 4)
