"""The LoRA fit in half precision (CPU here, as on CUDA): fp32 master weights, autocast, a scaled fp16 loss."""
import pytest
import torch

from dreammover.lora import fit_lora, lora_parameters, remove_lora
from dreammover.models import load_components

STEPS = 6


@pytest.fixture(scope="module")
def latents():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 8, 8, generator=g) * 0.8, torch.randn(1, 77, 32, generator=g)


def _fit(unet, latents, dtype, **kw):
    z, emb = latents
    remove_lora(unet)
    steps = []
    state, losses = fit_lora(unet, z.to(dtype), emb.to(dtype), torch.linspace(0.999, 0.01, 1000), rank=4,
                             lr=5e-3, steps=STEPS, on_step=lambda i, loss: steps.append(loss), **kw)
    dtypes = {p.dtype for p in lora_parameters(unet)}
    remove_lora(unet)
    # the per-step losses are 0-d device tensors during the fit and plain floats at the end
    assert all(isinstance(t, torch.Tensor) and t.ndim == 0 for t in steps) and len(losses) == STEPS
    return state, losses, dtypes


def _cosine(a: dict, b: dict) -> float:
    x = torch.cat([v.flatten() for k, v in sorted(a.items()) if "lora_B" in k])
    y = torch.cat([v.flatten() for k, v in sorted(b.items()) if "lora_B" in k])
    return float(torch.nn.functional.cosine_similarity(x, y, dim=0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_fit_follows_the_fp32_fit(tiny_model_dir, tiny_dm, latents, dtype):
    """Same seeds, same draws: the half fit's losses and adapter track the fp32 fit's; its masters stay fp32."""
    ref_state, ref_losses, _ = _fit(tiny_dm.components.unet, latents, torch.float32)
    half = load_components(str(tiny_model_dir), device="cpu", dtype=dtype)
    state, losses, dtypes = _fit(half.unet, latents, dtype)
    assert dtypes == {torch.float32} and half.unet.dtype == dtype
    assert all(abs(a - b) <= 0.03 * b for a, b in zip(losses, ref_losses)), (losses, ref_losses)
    assert _cosine(state, ref_state) > 0.95
    assert any(v.abs().sum() > 0 for k, v in state.items() if "lora_B" in k)


def test_fp16_loss_is_scaled_and_unscaled_for_the_update(tiny_model_dir, latents, monkeypatch):
    """GradScaler is in the loop for fp16 (as accelerate's fp16 mixed precision): its scale multiplies the loss
    before backward and the optimizer sees unscaled gradients, so scaling must not change the fit."""
    half = load_components(str(tiny_model_dir), device="cpu", dtype=torch.float16)
    scales = []
    real_update = torch.amp.GradScaler.update

    def spy(self, *a, **k):
        scales.append(float(self.get_scale()))
        return real_update(self, *a, **k)

    monkeypatch.setattr(torch.amp.GradScaler, "update", spy)
    scaled, scaled_losses, _ = _fit(half.unet, latents, torch.float16)
    assert len(scales) == STEPS and min(scales) >= 2.0 ** 10
    plain, plain_losses, _ = _fit(half.unet, latents, torch.float16, loss_scaling=False)
    assert len(scales) == STEPS  # no scaler when scaling is off
    assert _cosine(scaled, plain) > 0.95
