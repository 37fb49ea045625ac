"""Each Table-3 ablation switch must change the in-between frame (every one of them, not just any)."""
import typing

import numpy as np
import pytest

from dreammover import InterpolationConfig

FAST = dict(size=64, num_frames=1, num_inference_steps=10, inversion_steps=6, feature_step=3, lora_steps=2,
            lora_lr=1e-2)


def _classical_flow() -> str:
    """Whichever classical estimator the config offers (the Literal grows from 'opencv' to 'dis'/'farneback')."""
    options = typing.get_args(InterpolationConfig.model_fields["flow"].annotation)
    return next(o for o in options if o != "diffusion")


@pytest.fixture(scope="module")
def pair():
    """A procedural pair: a smooth texture with a bright square that moves 12 px right and 4 px down."""
    import cv2

    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((96, 96, 3)) * 255).astype(np.uint8), (0, 0), 3)
    a, b = tex[8:72, 8:72].copy(), tex[8:72, 8:72].copy()
    a[20:36, 10:26] = (250, 200, 40)
    b[24:40, 22:38] = (250, 200, 40)
    return a, b


@pytest.fixture(scope="module")
def middles(tiny_dm, pair):
    runs = {"full": {}, "classical_flow": {"flow": _classical_flow()}, "direct_fusion": {"fusion": "direct"},
            "no_reference_attention": {"reference_attention": False}, "no_lora": {"lora": False}}
    out = {}
    for name, extra in runs.items():
        result = tiny_dm.interpolate(*pair, InterpolationConfig(**FAST, **extra))
        assert len(result.frames) == 3
        out[name] = result.frames[1].astype(int)
    tiny_dm.use_lora(None, 16)
    return out


def test_every_ablation_switch_changes_the_in_between_frame(middles):
    diffs = {k: int(np.abs(middles["full"] - v).max()) for k, v in middles.items() if k != "full"}
    assert all(d > 0 for d in diffs.values()), diffs
