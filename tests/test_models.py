"""Model loading: tiny model through the real folder path, SD1.5 topology, clear errors offline."""
import pytest
import torch

from dreammover import ModelLoadError, load_components
from dreammover.attention import self_attention_layers
from dreammover.features import extract_features


def test_tiny_model_has_sd15_topology(tiny_dm):
    unet = tiny_dm.components.unet
    assert len(unet.down_blocks) == 4 and len(unet.up_blocks) == 4
    assert [type(b).__name__ for b in unet.down_blocks] == ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]
    assert [type(b).__name__ for b in unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert len(self_attention_layers(unet)) == 16
    assert tiny_dm.components.vae_scale == pytest.approx(0.18215)
    sched = tiny_dm.components.scheduler.config
    assert (sched.steps_offset, sched.set_alpha_to_one, sched.clip_sample) == (1, False, False)
    # VAE factor 8, as SD1.5
    z = tiny_dm.encode_images([torch.zeros(64, 128, 3, dtype=torch.uint8).numpy()])
    assert z.shape == (1, 4, 8, 16)


def test_tiny_model_is_deterministic(tmp_path):
    from dreammover.tiny import build_tiny_model
    from safetensors.torch import load_file

    a, b = build_tiny_model(tmp_path / "a"), build_tiny_model(tmp_path / "b")
    wa = load_file(a / "unet" / "diffusion_pytorch_model.safetensors")
    wb = load_file(b / "unet" / "diffusion_pytorch_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_feature_hook_captures_second_up_block_without_changing_output(tiny_dm):
    unet = tiny_dm.components.unet
    tiny_dm.use_lora(None, 16)
    x, emb = torch.randn(2, 4, 8, 8), tiny_dm.encode_prompt("").expand(2, -1, -1)
    with torch.no_grad():
        plain = unet(x, 261, encoder_hidden_states=emb).sample
        out = {}
        feats = extract_features(lambda: out.setdefault("y", unet(x, 261, encoder_hidden_states=emb).sample), unet, 1)
    assert torch.equal(out["y"], plain)
    assert feats.shape[0] == 2 and feats.shape[1] == unet.config.block_out_channels[-2]
    assert not unet.up_blocks[1]._forward_hooks  # hook removed


def test_identity_distinguishes_dtype(tiny_model_dir):
    c32 = load_components(str(tiny_model_dir), device="cpu", dtype=torch.float32)
    assert c32.identity.endswith("float32") and c32.identity.startswith("dir:")


def test_missing_hub_model_offline_gives_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as err:
        load_components("nobody/not-a-model-xyz", device="cpu")
    msg = str(err.value)
    assert "nobody/not-a-model-xyz" in msg and "HF_HUB_OFFLINE" in msg and "\n" not in msg


def test_missing_local_path_and_unsafe_checkpoint_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_components(str(tmp_path / "missing.safetensors"), device="cpu")
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not a pickle")
    with pytest.raises(ModelLoadError, match="only .safetensors"):
        load_components(str(ckpt), device="cpu")
    (tmp_path / "notamodel").mkdir()
    with pytest.raises(ModelLoadError, match="not a diffusers model"):
        load_components(str(tmp_path / "notamodel"), device="cpu")


def test_sd15_random_is_sd15s_architecture_from_the_shared_builder():
    """sd15-random (GPU benchmarks without a download) comes from the tiny model's builder at SD1.5's widths."""
    from dreammover.models import BUILT_MODELS
    from dreammover.tiny import build_modules

    assert BUILT_MODELS == ("tiny", "sd15-random")
    with torch.device("meta"):  # the architecture only: no memory, no init time
        unet, vae, text = build_modules("sd15-random")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet) == 859_520_964 and count(vae) == 83_653_863  # SD1.5's UNet and VAE
    assert len(self_attention_layers(unet)) == 16 and unet.config.cross_attention_dim == 768
    assert text.config.hidden_size == 768 and text.config.num_hidden_layers == 12  # CLIP ViT-L/14 text tower
