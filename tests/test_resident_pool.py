"""Both models resident on one worker (issue #17 follow-up): DreamMover and the restyle (T2V) model together.

An archive with --restyle-target loads each model once, not once per pair (DREAMMOVER_RESIDENT_MODELS=2, the
default); with 1 the worker swaps them as before. A failed restyle drops only the T2V model: the DreamMover
model stays resident, as it was. A chained burst is restyled as one clip, and a re-run skips it.
The archive runs its pairs here, without a pool: this process's cache is the worker's.
"""
from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
import torch

from fault_harness import FAST, distinct_pair

T2V = "tiny-t2v"


@pytest.fixture
def models(monkeypatch):
    """This process's model cache, emptied so its load counts start from nothing (and emptied again after)."""
    from dreammover_tasks.models import MODELS

    MODELS.clear()
    yield MODELS
    MODELS.clear()


def _spec(tiny_model_dir):
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.mark.parametrize("resident,dreammover_loads,t2v_loads", [("2", 1, 1), ("1", 2, 2)])
def test_an_archive_with_restyle_loads_each_model_once_when_both_stay_resident(
        prefect_env, tiny_model_dir, models, monkeypatch, tmp_path, resident, dreammover_loads, t2v_loads):
    from dreammover.config import InterpolationConfig
    from dreammover.restyle import RestyleConfig
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.restyle import RestyleSettings

    monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", resident)
    for i in range(2):
        distinct_pair(tmp_path / "src" / f"p{i}", i)
    before, kinds = models.loads, models.loads_by_kind.copy()
    report = interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"),
                                 cache=str(tmp_path / "cache"), model=_spec(tiny_model_dir),
                                 config=InterpolationConfig(**{**FAST, "num_frames": 2}),
                                 restyle=RestyleSettings(target="a watercolour", model=T2V,
                                                         config=RestyleConfig(steps=1)))
    assert report["done"] == 2, report["pairs"]
    for i in range(2):
        summary = json.loads((tmp_path / "out" / f"p{i}.json").read_text())
        assert summary["stages"]["restyle"]["status"] == "computed"
    # Each pair interpolates, then restyles: with two slots neither model is reloaded for the second pair.
    assert dict(models.loads_by_kind - kinds) == {"LoadedModel": dreammover_loads, "LoadedT2V": t2v_loads}
    (worker_loads,) = report["pool"]["model_loads"].values()
    assert worker_loads - before == dreammover_loads + t2v_loads
    assert len(models.resident()) == int(resident)


def test_a_failed_restyle_drops_only_the_t2v_model(prefect_env, tiny_model_dir, models, monkeypatch, tmp_path):
    import numpy as np

    import dreammover.restyle as library
    from dreammover.restyle import RestyleConfig
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.restyle import LoadedT2V, RestyleSettings, restyle_clip, store_frames

    monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", "2")
    with models.use(_spec(tiny_model_dir)) as dm:
        dm.activate_lora(None)  # a known state: the plain UNet active
        params = {k: v.detach().clone() for k, v in dm.dm.components.unet.state_dict().items()}
    t2v_spec = ModelSpec(model=T2V, device="cpu", dtype="fp32")
    with models.use(t2v_spec, LoadedT2V) as t2v:
        pass
    assert models.resident() == [dm, t2v]

    def crash(*a, **kw):
        raise RuntimeError("out of patience")
    monkeypatch.setattr(library, "restyle", crash)
    rng = np.random.default_rng(0)
    frames = store_frames(str(tmp_path / "cache"), [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                                                    for _ in range(3)])
    with pytest.raises(RuntimeError, match="out of patience"):
        restyle_clip(frames, RestyleSettings(target="a tiger", model=T2V, config=RestyleConfig(steps=1)),
                     t2v_spec, str(tmp_path / "cache"))
    assert models.resident() == [dm]  # the T2V model is gone, DreamMover's stays
    assert dm.active_lora is None
    assert all(torch.equal(v, params[k]) for k, v in dm.dm.components.unet.state_dict().items())
    loads = models.loads
    with models.use(_spec(tiny_model_dir)) as again:
        assert again is dm and models.loads == loads  # no reload for the model the failure did not touch


def test_the_worker_preloads_the_restyle_model_beside_the_dreammover_model(monkeypatch):
    from dreammover_tasks import gpu_worker, models as cache_module
    from dreammover_tasks.models import ModelCache
    from dreammover_tasks.restyle import LoadedT2V

    built = []

    def stand(self, spec):
        built.append((type(self).__name__, spec.model))
        self.spec, self.dm = spec, SimpleNamespace(device=torch.device("cpu"))
    for loader in (cache_module.LoadedModel, LoadedT2V):
        monkeypatch.setattr(loader, "__init__", stand)
    monkeypatch.setattr(cache_module.LoadedModel, "identity", property(lambda self: "dm:" + self.spec.model))
    monkeypatch.setattr(LoadedT2V, "identity", property(lambda self: "t2v:" + self.spec.model))
    worker = SimpleNamespace(state=SimpleNamespace(nthreads=1), address="inproc://w")
    for resident, kept in (("2", ["LoadedModel", "LoadedT2V"]), ("1", ["LoadedT2V"])):
        monkeypatch.setattr(cache_module, "MODELS", ModelCache())  # read by the plugin at setup
        monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", resident)
        built.clear()
        monkeypatch.setenv("DREAMMOVER_PRELOAD_MODEL", "tiny")
        monkeypatch.setenv("DREAMMOVER_PRELOAD_RESTYLE_MODEL", T2V)
        added = []
        asyncio.run(gpu_worker.dask_setup(SimpleNamespace(plugin_add=_async(added.append))))
        (host,) = added
        host.setup(worker)
        assert built == [("LoadedModel", "tiny"), ("LoadedT2V", T2V)]
        assert [type(m).__name__ for m in cache_module.MODELS.resident()] == kept
        host.teardown(worker)
        assert cache_module.MODELS.resident() == []


def _async(fn):
    async def call(*a):
        return fn(*a)
    return call


def test_a_chained_burst_with_restyle_is_one_restyled_clip_and_a_rerun_skips(prefect_env, tiny_model_dir, models,
                                                                              tmp_path):
    from PIL import Image

    from dreammover.config import InterpolationConfig
    from dreammover.restyle import RestyleConfig
    from dreammover.video import read_video
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.restyle import RestyleSettings
    from test_chain import scene

    src = tmp_path / "src"
    src.mkdir()
    for i, x in enumerate((4, 30, 60)):
        Image.fromarray(scene(x)).save(src / f"b{i}.png")
    (tmp_path / "m.json").write_text(json.dumps([{"id": "burst", "keyframes": ["b0.png", "b1.png", "b2.png"]}]))
    run = dict(source=str(src), output=str(tmp_path / "out"), cache=str(tmp_path / "cache"),
               manifest=str(tmp_path / "m.json"), model=_spec(tiny_model_dir),
               config=InterpolationConfig(**{**FAST, "num_frames": 4}),
               restyle=RestyleSettings(target="an oil painting", model=T2V, config=RestyleConfig(steps=1)))
    kinds = models.loads_by_kind.copy()
    report = interpolate_archive(**run)
    assert report["done"] == 1, report["pairs"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["burst.mp4"]  # one clip
    summary = json.loads((tmp_path / "out" / "burst.json").read_text())
    assert summary["keyframes"] == 3 and len(read_video(tmp_path / "out" / "burst.mp4")) == 4 + 3
    assert summary["stages"]["restyle"]["status"] == "computed" and summary["stages"]["restyle"]["unet_evals"] > 0
    assert summary["restyle"]["target"] == "an oil painting" and summary["cache"]["restyled"]
    assert dict(models.loads_by_kind - kinds) == {"LoadedModel": 1, "LoadedT2V": 1}
    again = interpolate_archive(**run)
    assert again["skipped"] == 1 and again["done"] == 0  # its fingerprint holds the restyle: up to date


def test_cli_refuses_a_bad_resident_models_value_before_any_work(monkeypatch, tmp_path):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    im0, im1 = distinct_pair(tmp_path / "src" / "p0", 0)
    monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", "0")
    for args in (["run-archive", str(tmp_path / "src"), "-o", str(tmp_path / "out")],
                 ["run-pair", str(im0), str(im1), "-o", str(tmp_path / "clip.mp4")]):
        res = CliRunner().invoke(app, [*args, "--model", "tiny"])
        assert res.exit_code == 2 and "DREAMMOVER_RESIDENT_MODELS must be a whole number >= 1" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "clip.mp4").exists()
