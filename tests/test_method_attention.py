"""Reference attention (Eq. 9-10, DESIGN §3 step 11): who attends to what, which layers, and when."""
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from dreammover import InterpolationConfig
from dreammover.attention import ReferenceAttnProcessor, reference_attention, self_attention_layers
from dreammover.ddim import DDIMSchedule
from dreammover.denoise import denoise_chunk
from dreammover.state import PairState
from method_stubs import StubEps, sd15_scheduler, tiny_unet


@pytest.fixture(scope="module")
def unet():
    return tiny_unet()


def _attn(**kw):
    torch.manual_seed(0)
    return Attention(**{"query_dim": 16, "heads": 2, "dim_head": 8, **kw}).eval()


def _run(attn, processor, x, **kw):
    attn.set_processor(processor)
    with torch.no_grad():
        return attn(x, **kw)


def test_every_in_between_frame_keeps_its_queries_and_reads_both_endpoints():
    attn = _attn()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 6, 16, generator=g)                       # endpoints 0, 1; frames 2, 3, 4
    out = _run(attn, ReferenceAttnProcessor(), x)
    plain = _run(attn, AttnProcessor2_0(), x)
    assert torch.allclose(out[:2], plain[:2], atol=1e-5)         # endpoints: ordinary self-attention
    with torch.no_grad():
        ref = torch.cat([x[0], x[1]])                            # [K_0; K_1], [V_0; V_1]: first, then last
        k = attn.to_k(ref).view(12, 2, 8).transpose(0, 1)
        v = attn.to_v(ref).view(12, 2, 8).transpose(0, 1)
        for i in (2, 3, 4):
            q = attn.to_q(x[i]).view(6, 2, 8).transpose(0, 1)
            want = attn.to_out[0](F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(6, 16))
            assert torch.allclose(out[i], want, atol=1e-5), i
            assert not torch.allclose(out[i], plain[i], atol=1e-3)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_batch_of_endpoints_only_is_plain_self_attention(batch):
    attn = _attn()
    x = torch.randn(batch, 6, 16, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(_run(attn, ReferenceAttnProcessor(), x), _run(attn, AttnProcessor2_0(), x), atol=1e-5)


def _check_like_plain(attn, x, **kw):
    """Endpoints with different content match the stock processor; a frame equal to both endpoints does too."""
    ends = _run(attn, ReferenceAttnProcessor(), x, **kw)
    assert torch.allclose(ends, _run(attn, AttnProcessor2_0(), x, **kw), atol=1e-5)
    same = torch.cat([x[:1]] * 3)
    kw3 = {k: torch.cat([v[:1]] * 3) for k, v in kw.items()}
    out = _run(attn, ReferenceAttnProcessor(), same, **kw3)
    plain = _run(attn, AttnProcessor2_0(), same[:1], **{k: v[:1] for k, v in kw3.items()})
    assert torch.allclose(out[2], plain[0], atol=1e-5)


def test_image_shaped_input_with_group_norm_residual_and_rescale():
    attn = _attn(query_dim=16, norm_num_groups=4, residual_connection=True, rescale_output_factor=2.0,
                 bias=True, out_bias=True)
    _check_like_plain(attn, torch.randn(2, 16, 3, 2, generator=torch.Generator().manual_seed(3)))


def test_spatial_norm_and_qk_norm_are_applied():
    attn = _attn(query_dim=32, dim_head=16, spatial_norm_dim=4)
    x = torch.randn(2, 32, 2, 3, generator=torch.Generator().manual_seed(4))
    _check_like_plain(attn, x, temb=torch.randn(2, 4, 1, 1, generator=torch.Generator().manual_seed(5)))
    _check_like_plain(_attn(qk_norm="layer_norm"), torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(6)))


def test_cross_attention_input_is_refused():
    attn = _attn(cross_attention_dim=8)
    attn.set_processor(ReferenceAttnProcessor())
    with pytest.raises(ValueError, match=r"^ReferenceAttnProcessor is for self-attention"):
        attn(torch.randn(3, 4, 16), encoder_hidden_states=torch.randn(3, 5, 8))


def _names(unet, modules):
    names = {id(m): n for n, m in unet.named_modules()}
    return [names[id(m)] for m in modules]


def test_self_attention_layers_in_execution_order_down_mid_up(unet):
    names = _names(unet, self_attention_layers(unet))
    # derived from the module tree: the attn1 of every transformer block, down path, then middle, then up path
    every = [n for n, _ in unet.named_modules() if n.endswith(".attn1")]
    want = ([n for n in every if n.startswith("down_blocks.")] + [n for n in every if n.startswith("mid_block.")]
            + [n for n in every if n.startswith("up_blocks.")])
    assert names == want and len(names) == 16


def test_context_patches_only_the_configured_self_attention_blocks(unet):
    layers = self_attention_layers(unet)
    cross = [m for n, m in unet.named_modules() if n.endswith(".attn2")]
    before = [m.processor for m in layers] + [m.processor for m in cross]
    for k in (6, 2):
        with reference_attention(unet, k) as active:
            assert active == layers[-k:]
            assert [isinstance(m.processor, ReferenceAttnProcessor) for m in layers] == [False] * (16 - k) + [True] * k
            assert [m.processor for m in cross] == before[16:]             # cross-attention untouched
        assert [m.processor for m in layers] + [m.processor for m in cross] == before
    for kw in ({"num_blocks": 0}, {"num_blocks": 6, "enabled": False}):
        with reference_attention(unet, **kw) as active:
            assert active == [] and [m.processor for m in layers] == before[:16]


def test_context_restores_processors_when_the_pass_fails(unet):
    layers = self_attention_layers(unet)
    before = [m.processor for m in layers]
    with pytest.raises(KeyError):
        with reference_attention(unet, 6):
            raise KeyError("UNet pass failed")
    assert [m.processor for m in layers] == before


@pytest.mark.parametrize("extra, patched", [({}, 6), ({"reference_blocks": 3}, 3), ({"reference_attention": False}, 0),
                                            ({"fusion": "direct"}, 6)])
def test_denoising_runs_every_unet_pass_under_reference_attention(unet, extra, patched):
    layers = self_attention_layers(unet)
    seen = []
    stub = StubEps(unet=unet)
    stub.on_call = lambda x, t: seen.append([isinstance(m.processor, ReferenceAttnProcessor) for m in layers])
    cfg = InterpolationConfig(size=64, num_inference_steps=10, inversion_steps=3, feature_step=1, **extra)
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    state = PairState(z, z.clone(), torch.zeros(2, 4, 4), torch.zeros(2, 4, 4), torch.zeros(1, 77, 32))
    denoise_chunk(stub, DDIMSchedule.from_scheduler(sd15_scheduler(), 10), state, [0.5], cfg)
    n_calls = 3 if extra.get("fusion") == "direct" else 4          # both passes of the first step included
    assert seen == [[False] * (16 - patched) + [True] * patched] * n_calls
    assert not any(isinstance(m.processor, ReferenceAttnProcessor) for m in layers)   # restored afterwards
