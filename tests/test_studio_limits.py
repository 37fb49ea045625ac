"""One limits model for every setting (issue #16): each numeric field of both backends' configs and of the clip
overrides gets a 4xx naming the field and its limit, in plain words; heavy jobs are refused with the estimate."""
import json

import pytest

pytest.importorskip("multipart")

from dreammover.backends.svd_config import SVDKeyframeConfig  # noqa: E402
from dreammover.config import InterpolationConfig  # noqa: E402
from dreammover.presets import ClipPreset  # noqa: E402
from dreammover_studio.limits import StudioLimits, unbounded  # noqa: E402
from test_studio_kit import studio_client, submit  # noqa: E402

HUGE = 10 ** 12


@pytest.fixture(scope="module")
def client(tiny_dm, tmp_path_factory):
    with studio_client(tiny_dm, tmp_path_factory.mktemp("limits") / "home", svd_model="tiny-svd") as (c, _):
        yield c


def _numeric(model_cls, bounds) -> list[str]:
    return [n for n in model_cls.model_fields if n in bounds]


def test_every_numeric_field_has_a_bound():
    limits = StudioLimits()
    assert unbounded(InterpolationConfig, limits.field_bounds()) == []
    assert unbounded(SVDKeyframeConfig, limits.field_bounds()) == []
    assert unbounded(ClipPreset, limits.clip_bounds()) == []
    # the check itself notices a field without a bound
    assert "lora_steps" in unbounded(InterpolationConfig, {})


@pytest.mark.parametrize("backend,model_cls", [("dreammover", InterpolationConfig), ("svd", SVDKeyframeConfig)])
def test_every_settings_field_out_of_bounds_gets_a_4xx_naming_it(client, backend, model_cls):
    fields = _numeric(model_cls, StudioLimits().field_bounds())
    assert len(fields) >= (15 if backend == "dreammover" else 8)
    for name in fields:
        r = submit(client, backend=backend, settings=json.dumps({name: HUGE}))
        detail = r.json()["detail"]
        assert 400 <= r.status_code < 500 and detail.startswith(name), (name, r.status_code, detail)
        assert "Input should" not in detail and ("limit" in detail or "at most" in detail), detail
    assert client.get("/jobs").json() == []


def test_every_clip_field_out_of_bounds_gets_a_4xx_naming_it(client):
    values = {"focus": [5, 5], "pad_color": [999, 0, 0], "width": HUGE, "height": HUGE}
    for name in _numeric(ClipPreset, StudioLimits().clip_bounds()):
        clip = {name: values.get(name, HUGE)}
        if name in ("width", "height"):
            clip = {"width": HUGE, "height": HUGE}
        r = submit(client, settings=json.dumps({"clip": clip}))
        detail = r.json()["detail"]
        assert 400 <= r.status_code < 500 and detail.startswith("clip."), (name, r.status_code, detail)
        assert "Input should" not in detail, detail
    assert client.get("/jobs").json() == []


def test_the_reported_cases_name_field_and_limit(client):
    cases = {
        "lora_steps": ({"lora_steps": 100000}, "lora_steps: 100000 is more than the limit of 400"),
        "lora_rank": ({"lora_rank": 100000}, "lora_rank: 100000 is more than the limit of 64"),
        "steps": ({"num_inference_steps": 10000}, "num_inference_steps: 10000 is more than the limit of 100"),
        "seed": ({"seed": 10 ** 30}, f"seed: {10 ** 30} is more than the limit of {2 ** 32 - 1}"),
        "rank 0": ({"lora_rank": 0}, "lora_rank: 0 is less than the minimum of 1"),
        "words": ({"lora_lr": "fast"}, "lora_lr must be a number"),  # pydantic's rules, in plain words
        "flag": ({"lora": "perhaps"}, "lora must be true or false"),
        "retime": ({"clip": {"retime": "morph"}}, "clip.retime must be one of 'repeat' or 'blend'"),
        "unknown": ({"lora_stepz": 3}, "lora_stepz is not a setting here"),
    }
    for what, (settings, said) in cases.items():
        r = submit(client, settings=json.dumps(settings))
        assert r.status_code == 400 and r.json()["detail"] == said, (what, r.json())
    r = submit(client, seed=str(10 ** 30))
    assert r.status_code == 400 and r.json()["detail"].startswith("seed: ")
    r = submit(client, prompt="x" * 900_000)
    assert r.status_code == 400 and r.json()["detail"] == "prompt: 900000 characters is more than the limit of 1000"
    r = submit(client, settings=json.dumps({"clip": {"width": 5000, "height": 5000}}))
    assert r.json()["detail"] == "clip.width: 5000 is more than the limit of 2160"
    assert client.get("/jobs").json() == []


def test_duration_times_fps_and_heavy_jobs_are_refused_with_the_estimate(tiny_dm, tmp_path):
    limits = StudioLimits(clip_frames=1000, unet_passes=200, size=8192)
    with studio_client(tiny_dm, tmp_path / "home", limits=limits) as (client, _):
        r = submit(client, settings=json.dumps({"clip": {"duration": 60, "fps": 120, "retime": "blend"}}))
        assert r.status_code == 400
        assert r.json()["detail"].startswith("clip: duration x fps (with holds and loop) makes 7200 frames, more "
                                             "than the limit of 1000")
        r = submit(client, frames="32", settings=json.dumps({"num_inference_steps": 50, "inversion_steps": 30}))
        assert r.status_code == 400 and "UNet passes" in r.json()["detail"] and "limit of 200" in r.json()["detail"]
        r = submit(client, size="8192", settings=json.dumps({"lora_steps": 1}))
        assert r.status_code == 400 and "does not fit in memory here: 8192x8192" in r.json()["detail"], r.json()
        assert client.get("/jobs").json() == []
