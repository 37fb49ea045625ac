"""The restyle-clip pipeline task and `run-pair --restyle-target`, on the tiny models, offline.

A re-run does no UNet work (counted with a forward hook on the worker's resident model); changing a
prompt, a setting or the mask edits again; the resident model is left as loaded, after a success and
after a failure; the pair flow restyles the rendered frames before publishing.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fault_harness import FAST, distinct_pair

T2V = "tiny-t2v"


def _frames(n: int = 4, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture()
def unet_calls(dreammover_home):
    """{"n": UNet forward calls} on the resident tiny T2V model of this process (loaded here if needed)."""
    from dreammover_tasks.models import MODELS, ModelSpec
    from dreammover_tasks.restyle import LoadedT2V

    calls = {"n": 0}
    with MODELS.use(ModelSpec(model=T2V, device="cpu", dtype="fp32"), LoadedT2V) as m:
        hook = m.dm.unet.register_forward_pre_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    yield calls
    hook.remove()


def test_rerun_does_no_unet_work_and_any_change_edits_again(prefect_env, unet_calls, tmp_path):
    from dreammover.restyle import RestyleConfig
    from dreammover_tasks.artifacts import get_images
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.restyle import RestyleSettings, restyle_clip, store_frames, store_mask

    cache = str(tmp_path / "cache")
    frames = store_frames(cache, _frames())
    model = ModelSpec(model=T2V, device="cpu", dtype="fp32")
    base = RestyleSettings(target="a tiger", source="a dog", model=T2V, config=RestyleConfig(steps=2))

    def run(settings=base, mask=None):
        before = unet_calls["n"]
        out = restyle_clip(frames, settings, model, cache, mask)
        return out, unet_calls["n"] - before

    first, work = run()
    assert work > 0 and first.frames.run.computed and first.frames.count == 4
    edited = get_images(first.frames.uri)
    assert len(edited) == 4 and edited[0].shape == (48, 64, 3)
    again, work = run()
    assert work == 0 and not again.frames.run.computed and again.frames.uri == first.frames.uri
    box = np.zeros((48, 64), np.float32)
    box[8:24, 8:40] = 1
    changes = {"target": base.model_copy(update={"target": "a zebra"}),
               "source": base.model_copy(update={"source": "a cat"}),
               "seed": base.model_copy(update={"config": RestyleConfig(steps=2, seed=1)}),
               "steps": base.model_copy(update={"config": RestyleConfig(steps=3)}),
               "no T-SSM": base.model_copy(update={"config": RestyleConfig(steps=2, temporal_ssm=False)})}
    keys = {first.frames.key}
    for what, settings in changes.items():
        out, work = run(settings)
        assert work > 0 and out.frames.run.computed, what
        keys.add(out.frames.key)
    out, work = run(mask=store_mask(cache, box))
    assert work > 0 and out.frames.key not in keys
    out, work = run(mask=store_mask(cache, box[::-1].copy()))  # another mask: another edit
    assert work > 0
    assert len(keys) == 1 + len(changes)


def test_the_resident_model_is_left_as_loaded_after_an_edit_and_dropped_after_a_failure(prefect_env, tmp_path,
                                                                                        monkeypatch):
    from diffusers.models.attention_processor import AttnProcessor

    from dreammover.restyle import RestyleConfig
    from dreammover_tasks.models import MODELS, ModelSpec
    from dreammover_tasks.restyle import LoadedT2V, RestyleSettings, restyle_clip, store_frames

    cache, model = str(tmp_path / "cache"), ModelSpec(model=T2V, device="cpu", dtype="fp32")
    frames = store_frames(cache, _frames(n=3))
    with MODELS.use(model, LoadedT2V) as m:
        resident = m
        params = {k: v.detach().clone() for k, v in m.dm.unet.state_dict().items()}
        processors = {k: type(v) for k, v in m.dm.unet.attn_processors.items()}
    restyle_clip(frames, RestyleSettings(target="a red car", source="a car", model=T2V,
                                         config=RestyleConfig(steps=2)), model, cache)
    with MODELS.use(model, LoadedT2V) as m:
        assert m is resident  # kept resident across tasks
        assert all(torch.equal(v, params[k]) for k, v in m.dm.unet.state_dict().items())  # params untouched
        assert {k: type(v) for k, v in m.dm.unet.attn_processors.items()} == processors  # no capture left set
        assert not any(p.requires_grad for p in m.dm.unet.parameters())

    import dreammover.restyle as library

    class Capture(AttnProcessor):
        """Stands for a key-capturing processor an edit sets (any processor the UNet was not loaded with)."""

    def crash(t2v, *a, **kw):  # leave processors set and gradients switched on, then fail mid-edit
        t2v.unet.set_attn_processor(Capture())
        t2v.unet.requires_grad_(True)
        raise RuntimeError("out of patience")
    monkeypatch.setattr(library, "restyle", crash)
    with pytest.raises(RuntimeError, match="out of patience"):
        restyle_clip(frames, RestyleSettings(target="a blue car", model=T2V, config=RestyleConfig(steps=2)),
                     model, cache)
    assert Capture not in processors.values()
    assert {k: type(v) for k, v in resident.dm.unet.attn_processors.items()} == processors
    assert not any(p.requires_grad for p in resident.dm.unet.parameters())
    with MODELS.use(model, LoadedT2V) as m:
        assert m is not resident  # the failed task's model was dropped: the next task loads fresh weights


def test_run_pair_restyle_target_restyles_the_rendered_clip(prefect_env, tiny_model_dir, tmp_path):
    import typer
    from typer.testing import CliRunner

    from dreammover.video import read_video
    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    im0, im1 = distinct_pair(tmp_path / "src" / "p0", 0)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({k: v for k, v in FAST.items() if k not in ("size", "num_frames",
                                                                           "frames_per_batch")}))
    common = ["run-pair", str(im0), str(im1), "--model", str(tiny_model_dir), "--frames", "2", "--size", "64",
              "--config", str(cfg), "--device", "cpu", "--cache", str(tmp_path / "cache")]
    plain, styled = tmp_path / "plain.mp4", tmp_path / "styled.mp4"
    res = CliRunner().invoke(app, [*common, "-o", str(plain)])
    assert res.exit_code == 0, res.output
    restyle = ["--restyle-target", "a watercolour", "--restyle-source", "a ball", "--restyle-model", T2V,
               "--restyle-steps", "2"]
    res = CliRunner().invoke(app, [*common, "-o", str(styled), *restyle])
    assert res.exit_code == 0, res.output
    a, b = read_video(plain), read_video(styled)
    assert len(a) == len(b) == 2 + 2 and a[0].shape == b[0].shape
    assert np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).mean() > 1.0
    summary = json.loads(styled.with_suffix(".json").read_text())
    first = json.loads(plain.with_suffix(".json").read_text())
    assert summary["stages"]["restyle"]["status"] == "computed" and summary["stages"]["restyle"]["unet_evals"] > 0
    assert summary["restyle"]["target"] == "a watercolour" and summary["restyle"]["config"]["steps"] == 2
    assert summary["fingerprint"] != first["fingerprint"]  # the restyle is part of the clip's identity
    assert summary["stages"]["decode"]["status"] == "reused"  # the frames rendered for `plain` were reused
    res = CliRunner().invoke(app, [*common, "-o", str(styled), *restyle])
    assert res.exit_code == 0, res.output
    again = json.loads(styled.with_suffix(".json").read_text())
    assert again["stages"]["restyle"]["status"] == "reused" and again["stages"]["restyle"]["unet_evals"] == 0
    assert again["fingerprint"] == summary["fingerprint"]


def test_archive_with_restyle_skips_up_to_date_clips_and_restyles_again_on_a_new_prompt(prefect_env, tiny_model_dir,
                                                                                        tmp_path):
    from dreammover.config import InterpolationConfig
    from dreammover.restyle import RestyleConfig
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.restyle import RestyleSettings

    distinct_pair(tmp_path / "src" / "p0", 0)
    run = dict(source=str(tmp_path / "src"), output=str(tmp_path / "out"), cache=str(tmp_path / "cache"),
               model=ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32"),
               config=InterpolationConfig(**{**FAST, "num_frames": 2}))
    styled = RestyleSettings(target="a watercolour", model=T2V, config=RestyleConfig(steps=1))
    assert interpolate_archive(restyle=styled, **run)["done"] == 1
    summary = json.loads((tmp_path / "out" / "p0.json").read_text())
    assert summary["stages"]["restyle"]["status"] == "computed"
    assert interpolate_archive(restyle=styled, **run)["skipped"] == 1  # its fingerprint holds the restyle
    report = interpolate_archive(restyle=styled.model_copy(update={"target": "a sketch"}), **run)
    assert report["done"] == 1
    again = json.loads((tmp_path / "out" / "p0.json").read_text())
    assert again["stages"]["restyle"]["status"] == "computed" and again["restyle"]["target"] == "a sketch"
    assert again["stages"]["decode"]["status"] == "reused"  # only the edit ran again


def test_restyle_enters_the_fingerprint_only_when_given():
    from dreammover.config import InterpolationConfig
    from dreammover.restyle import RestyleConfig
    from dreammover_flows.pair import fingerprint
    from dreammover_tasks.artifacts import clip_fingerprint
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.restyle import RestyleSettings

    inputs, model, config = {"image0": "a", "image1": "b"}, ModelSpec(model="m"), InterpolationConfig()
    before = clip_fingerprint(inputs, model.model_dump(), config, 10.0, "mp4")  # as summaries were written
    assert fingerprint("a", "b", model, config, 10.0, "mp4", inputs=inputs) == before
    one = RestyleSettings(target="a tiger", config=RestyleConfig(steps=2))
    prints = {fingerprint("a", "b", model, config, 10.0, "mp4", inputs=inputs, restyle=r)
              for r in (one, one.model_copy(update={"target": "a lion"}),
                        one.model_copy(update={"config": RestyleConfig(steps=3)}))}
    assert len(prints) == 3 and before not in prints


def test_cli_refuses_an_empty_restyle_target_before_any_work(tmp_path):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    im0, im1 = distinct_pair(tmp_path / "src" / "p0", 0)
    for args in (["run-archive", str(tmp_path / "src"), "-o", str(tmp_path / "out")],
                 ["run-pair", str(im0), str(im1), "-o", str(tmp_path / "clip.mp4")]):
        res = CliRunner().invoke(app, [*args, "--model", "tiny", "--restyle-target", "  "])
        assert res.exit_code == 2 and "target prompt is empty" in res.output, res.output
        res = CliRunner().invoke(app, [*args, "--model", "tiny", "--restyle-steps", "3"])
        assert res.exit_code == 2 and "need --restyle-target" in res.output, res.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "clip.mp4").exists()
