"""Loading text-to-video models: tiny-t2v built once and deterministic, t2v-random's config, errors, preflight."""
from __future__ import annotations

import json

import pytest
import torch

from dreammover.models import ModelLoadError
from dreammover.restyle import RestyleConfig, key_layers, load_t2v, restyle_preflight
from dreammover.restyle.attention import capture_keys
from dreammover.restyle.build import T2V_SPECS, build_t2v


@pytest.fixture(scope="module")
def t2v(dreammover_home):
    return load_t2v("tiny-t2v", device="cpu", dtype=torch.float32, cache_dir=dreammover_home)


def test_tiny_t2v_is_a_diffusers_folder_built_once_and_deterministic(t2v, dreammover_home, tmp_path):
    folder = dreammover_home / "models" / "tiny-t2v-v1"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet3DConditionModel"]
    assert all((folder / sub / "config.json").is_file() for sub in ("unet", "vae", "text_encoder"))
    assert (folder / "tokenizer" / "vocab.json").is_file() and (folder / "scheduler").is_dir()
    mtime = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    again = load_t2v("tiny-t2v", device="cpu", cache_dir=dreammover_home)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == mtime  # not rebuilt
    assert again.identity == t2v.identity == "tiny-t2v-v1|float32"
    other = build_t2v(tmp_path / "copy", "tiny-t2v", seed=0)  # same seed, same weights
    from diffusers import UNet3DConditionModel
    copy = UNet3DConditionModel.from_pretrained(other, subfolder="unet")
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), t2v.unet.state_dict().values()))
    assert type(t2v.unet).__name__ == "UNet3DConditionModel" and not any(p.requires_grad for p in t2v.unet.parameters())


def test_a_local_folder_loads_with_its_content_identity(t2v, dreammover_home):
    folder = dreammover_home / "models" / "tiny-t2v-v1"
    m = load_t2v(str(folder), device="cpu", cache_dir=dreammover_home)
    assert m.identity.startswith("dir:tiny-t2v-v1@sha256:")
    assert m.alphas_cumprod.shape == (1000,) and m.alphas_cumprod[0] > m.alphas_cumprod[-1]


def test_t2v_random_has_zeroscopes_architecture():
    """Zeroscope v2 576w's unet/config.json values (checked on the config; building 1.4B params is too slow here)."""
    u = T2V_SPECS["t2v-random"]["unet"]
    assert u["block_out_channels"] == (320, 640, 1280, 1280) and u["layers_per_block"] == 2
    assert u["attention_head_dim"] == 64 and u["cross_attention_dim"] == 1024 and u["norm_num_groups"] == 32
    assert u["down_block_types"] == ("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",)
    assert u["up_block_types"] == ("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3
    assert T2V_SPECS["t2v-random"]["vae"]["block_out_channels"] == (128, 256, 512, 512)
    assert T2V_SPECS["t2v-random"]["text"]["hidden_size"] == 1024
    from diffusers import UNet3DConditionModel
    with torch.device("meta"):  # the config builds (no memory, no time on the meta device)
        unet = UNet3DConditionModel(**u)
    assert 1.3e9 < sum(p.numel() for p in unet.parameters()) < 1.5e9


def test_missing_models_fail_with_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_t2v(str(tmp_path / "nope"), device="cpu", cache_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no unet"):
        load_t2v(str(tmp_path / "empty"), device="cpu", cache_dir=tmp_path)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_t2v("someone/not-downloaded-t2v", device="cpu", cache_dir=tmp_path)


def test_keys_are_captured_from_decoder_spatial_self_attention_only(t2v):
    layers = key_layers(t2v.unet)
    assert layers and all(n.startswith("up_blocks.") and ".attentions." in n and n.endswith("attn1.processor")
                          for n in layers)
    x = torch.randn(1, 4, 3, 2, 2)
    emb = t2v.embed("a dog")
    before = t2v.unet(x, 10, encoder_hidden_states=emb).sample
    with capture_keys(t2v.unet, layers, stop_early=False) as store:
        during = t2v.unet(x, 10, encoder_hidden_states=emb).sample
    assert torch.equal(before, during)  # capturing does not change the UNet's output
    assert len(store) == len(layers) and all(k.shape[0] == 3 for k in store)  # (batch·frames, HW, C)
    with pytest.raises(ValueError, match="no spatial self-attention"):
        key_layers(t2v.unet, (0,))  # UpBlock3D has no attention


def test_preflight_plans_windows_iterations_and_memory(t2v):
    plan = restyle_preflight(t2v, 40, 27, 45, RestyleConfig(steps=5, window=16, overlap=4))
    assert plan.size_hw == (32, 48) and plan.latent_hw == (4, 6)
    assert len(plan.windows) == 3 and plan.iterations == 15
    assert plan.peak_bytes > plan.weight_bytes > 0 and plan.fits
    assert "3 window(s)" in plan.summary() and "15 iterations" in plan.summary() and "GiB" in plan.summary()
    big = restyle_preflight(t2v, 16, 320, 576, RestyleConfig())
    ckpt = restyle_preflight(t2v, 16, 320, 576, RestyleConfig(checkpointing=True))
    off = restyle_preflight(t2v, 16, 320, 576, RestyleConfig(spatial_ssm=False, temporal_ssm=False))
    assert big.activation_bytes > ckpt.activation_bytes > off.activation_bytes == 0
    assert big.activation_bytes > 50 * plan.activation_bytes  # grows with the size


def test_prompt_embeddings_are_cached_but_bounded(t2v):
    from dreammover.restyle.model import EMBEDDINGS_KEPT

    first = t2v.embed("a dog")
    assert t2v.embed("a dog") is first
    for i in range(EMBEDDINGS_KEPT + 3):
        t2v.embed(f"prompt {i}")
    assert len(t2v._embeddings) == EMBEDDINGS_KEPT and "a dog" not in t2v._embeddings
    assert torch.equal(t2v.embed("a dog"), first)
