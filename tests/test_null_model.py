"""The benchmark's null model (deploy/null_model.py) returns what the real DreamMover returns on the tiny model, in shape and dtype."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from dreammover import DreamMover, InterpolationConfig

CONFIG = InterpolationConfig(size=64, num_frames=2, lora_steps=2, lora_rank=4, num_inference_steps=4,
                             inversion_steps=3, feature_step=2)
DELTAS = [0.25, 0.5, 0.75]


def _steps(dm: DreamMover, images: list[np.ndarray]) -> dict:
    """Every step method the tasks call, in the tasks' order, as name -> output."""
    out = {"prompt": dm.encode_prompt(CONFIG.prompt), "posterior": dm.encode_posterior(images)}
    z0 = out["posterior"][0] * dm.components.vae_scale
    out["lora"], out["losses"] = dm.fit_lora(z0, out["prompt"], CONFIG, images=images, posterior=out["posterior"])
    out["state"] = dm.pair_state(images, CONFIG, encoded=(z0, out["prompt"]))
    dm.use_lora(out["lora"], CONFIG.lora_rank)
    out["latents"] = dm.denoise(out["state"], DELTAS, CONFIG)
    out["frames"] = dm.decode(out["latents"], CONFIG.decode_batch)
    dm.use_lora(None, CONFIG.lora_rank)
    return out


def _shape(x):
    if isinstance(x, torch.Tensor):
        return ("tensor", tuple(x.shape), x.dtype)
    if isinstance(x, np.ndarray):
        return ("array", x.shape, x.dtype)
    return type(x).__name__


@pytest.mark.parametrize("hw", [(64, 64), (64, 96)])
def test_null_model_steps_match_the_real_models_shapes(tiny_model_dir, hw):
    from deploy.null_model import NullDreamMover

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(2)]
    real = _steps(DreamMover.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.float32), images)
    null = _steps(NullDreamMover(str(tiny_model_dir)), images)

    for name in ("prompt", "latents"):
        assert _shape(null[name]) == _shape(real[name]), name
    assert [_shape(t) for t in null["posterior"]] == [_shape(t) for t in real["posterior"]]
    for field in ("z_T", "z_T_to_0", "flow01", "flow10", "text_emb"):
        assert _shape(getattr(null["state"], field)) == _shape(getattr(real["state"], field)), field
    assert [_shape(f) for f in null["frames"]] == [_shape(f) for f in real["frames"]]
    assert len(null["losses"]) >= 1 and isinstance(null["losses"][-1], float)
    # The LoRA goes through a safetensors artifact and the pair state through PairState.to_bytes in the tasks.
    assert set(load(save(null["lora"]))) == set(null["lora"])
    type(null["state"]).from_bytes(null["state"].to_bytes())


def test_null_loader_is_resident_once_with_a_stable_identity(tiny_model_dir):
    """Installed as tasks.models' loader, the null model is loaded once and never judged 'retrained'."""
    from deploy import null_preload
    from dreammover_tasks import models

    original = models.LoadedModel
    cache = models.ModelCache()
    try:
        null_preload.install()
        spec = models.ModelSpec(model=str(tiny_model_dir))
        with cache.use(spec) as first:
            identity = first.identity
        with cache.use(spec) as second:
            assert second is first and second.identity == identity
        assert cache.loads == 1 and isinstance(first, null_preload.NullLoadedModel)
    finally:
        models.LoadedModel = original


def test_null_model_through_the_librarys_composites(tiny_model_dir, tmp_path):
    """interpolate (and the composites it is built from) runs on the null model and gives the real clip's frame shapes."""
    from PIL import Image

    from deploy.null_model import NullDreamMover

    rng = np.random.default_rng(1)
    photos = []
    for side in (0, 1):
        photos.append(tmp_path / f"{side}.png")
        Image.fromarray(rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(photos[-1])
    real = DreamMover.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.float32)
    try:
        want = real.interpolate(*photos, CONFIG)
    finally:
        real.use_lora(None, CONFIG.lora_rank)
    got = NullDreamMover(str(tiny_model_dir)).interpolate(*photos, CONFIG)
    assert [_shape(f) for f in got.frames] == [_shape(f) for f in want.frames]
    assert [_shape(f) for f in got.flows] == [_shape(f) for f in want.flows]
