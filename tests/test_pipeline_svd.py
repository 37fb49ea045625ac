"""The SVD keyframe backend in the Prefect pipeline (`run-pair` / `run-archive --backend svd`) on tiny-svd, offline."""
from __future__ import annotations

import json

import pytest

from conftest import PAIRS

WIDE = PAIRS / "wide"
# 64 px, 3 in-between frames, 2 Euler steps, one recurrence, no CFG: every stage runs in about a second.
FAST = {"num_inference_steps": 2, "noise_injection_steps": 1, "guidance_scale": 1.0}




def _cli(args):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, [str(a) for a in args])


def _svd_args(tmp_path, *extra):
    cfg = tmp_path / "svd.json"
    cfg.write_text(json.dumps(FAST))
    return ["--backend", "svd", "--model", "tiny-svd", "--frames", "3", "--size", "64", "--config", cfg,
            "--device", "cpu", "--cache", tmp_path / "cache", *extra]


def test_run_pair_svd_writes_n_plus_2_frames_caches_them_and_keeps_the_model(prefect_env, dreammover_home,
                                                                              tmp_path):
    if not (WIDE / "0.png").exists():
        pytest.skip("../shared/fixtures/pairs/wide is not present")
    from dreammover.video import read_video

    out = tmp_path / "clips" / "wide.mp4"
    res = _cli(["run-pair", WIDE / "0.png", WIDE / "1.png", "-o", out, *_svd_args(tmp_path)])
    assert res.exit_code == 0, res.output
    frames = read_video(out)
    assert len(frames) == 3 + 2 and frames[0].shape == (64, 64, 3)
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["backend"] == "svd" and summary["frames"] == 5
    assert summary["model"].startswith("tiny-svd") and summary["config"]["num_inference_steps"] == 2
    assert summary["config"]["size"] == 64 and summary["config"]["num_frames"] == 3
    first = summary["stages"]["svd"]
    assert first["status"] == "computed" and first["unet_evals"] > 0
    loads = summary["pool"]["model_loads"]

    # Same pair, same settings: the frames come from the cache, no UNet work.
    res = _cli(["run-pair", WIDE / "0.png", WIDE / "1.png", "-o", out, *_svd_args(tmp_path)])
    assert res.exit_code == 0, res.output
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["stages"]["svd"]["status"] in ("cached", "reused") and again["stages"]["svd"]["unet_evals"] == 0
    assert again["fingerprint"] == summary["fingerprint"]

    # --refresh frames renders again on the model this process already holds: no second load.
    res = _cli(["run-pair", WIDE / "0.png", WIDE / "1.png", "-o", out, *_svd_args(tmp_path, "--refresh", "frames")])
    assert res.exit_code == 0, res.output
    third = json.loads(out.with_suffix(".json").read_text())
    assert third["stages"]["svd"]["status"] == "computed" and third["pool"]["model_loads"] == loads


def test_run_archive_svd_skips_up_to_date_pairs_and_rerenders_on_a_changed_svd_field(prefect_env,
                                                                                       dreammover_home, tmp_path):
    from dreammover.sample import write_sample_pair

    write_sample_pair(tmp_path / "in" / "sample", 64)
    args = ["run-archive", tmp_path / "in", "-o", tmp_path / "out", *_svd_args(tmp_path)]
    res = _cli(args)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "sample.json").read_text())["backend"] == "svd"
    res = _cli(args)
    assert res.exit_code == 0 and '"skipped": 1' in res.output, res.output
    # An SVD-only field is part of the fingerprint: the pair is rendered again.
    res = _cli([*args, "--seed", "7"])
    assert res.exit_code == 0 and '"done": 1' in res.output, res.output
    assert json.loads((tmp_path / "out" / "sample.json").read_text())["config"]["seed"] == 7


def test_fingerprint_records_the_backend():
    from dreammover import InterpolationConfig
    from dreammover.backends.svd_config import SVDKeyframeConfig
    from dreammover_flows.pair import fingerprint
    from dreammover_tasks.models import ModelSpec

    a, b, spec = str(WIDE / "0.png"), str(WIDE / "1.png"), ModelSpec(model="m")
    svd = fingerprint(a, b, spec, SVDKeyframeConfig(), 10.0, "mp4", backend="svd")
    assert svd != fingerprint(a, b, spec, SVDKeyframeConfig(), 10.0, "mp4")  # another backend re-renders
    assert svd != fingerprint(a, b, spec, SVDKeyframeConfig(seed=1), 10.0, "mp4", backend="svd")
    # DreamMover's fingerprint did not change with the backend parameter (old summaries stay valid).
    from dreammover_tasks.artifacts import clip_fingerprint
    from dreammover_tasks.ingest import photo_inputs

    dm = InterpolationConfig()
    assert fingerprint(a, b, spec, dm, 10.0, "mp4") == clip_fingerprint(photo_inputs(a, b), spec.model_dump(), dm,
                                                                        10.0, "mp4")


def test_unknown_backend_and_dreammover_options_are_refused_before_any_work(tmp_path, monkeypatch):
    import dreammover_flows.local_api

    def no_prefect():  # reaching the temporary API means work had started
        raise AssertionError("a flow was started")

    monkeypatch.setattr(dreammover_flows.local_api, "temporary_api", no_prefect)
    image = tmp_path / "0.png"
    image.write_bytes(b"x")
    (tmp_path / "in").mkdir()
    out = tmp_path / "clip.mp4"
    cases = [
        (["run-pair", image, image, "-o", out, "--backend", "nope"], "unknown backend 'nope'"),
        (["run-archive", tmp_path / "in", "-o", tmp_path / "out", "--backend", "nope"], "unknown backend 'nope'"),
        (["run-pair", image, image, "-o", out, "--backend", "svd", "--prompt", "a dog"], "--prompt is a DreamMover"),
        (["run-pair", image, image, "-o", out, "--backend", "svd", "--frames-per-batch", "2"], "--frames-per-batch"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"lora_steps": 3}))  # a DreamMover field in an SVD config
    cases.append((["run-pair", image, image, "-o", out, "--backend", "svd", "--config", bad], "bad configuration"))
    for args, message in cases:
        res = _cli(args)
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and "Traceback" not in res.output
    assert not out.exists() and not (tmp_path / "out").exists()


def test_render_task_sees_exactly_the_hashed_keyframes():
    """render-svd-pair hands prepared keyframes to `interpolate`, which prepares again: that must be the identity."""
    if not (WIDE / "0.png").exists():
        pytest.skip("../shared/fixtures/pairs/wide is not present")
    import numpy as np

    from dreammover.backends.svd_config import SVDKeyframeConfig
    from dreammover.backends.svd_keyframe import fit_keyframes
    from dreammover.images import load_image

    a, b = load_image(WIDE / "0.png"), load_image(WIDE / "1.png")
    for frame in ("16:9", "input"):
        config = SVDKeyframeConfig(size=128, frame=frame)
        once = fit_keyframes(a, b, config)
        twice = fit_keyframes(*once, config)
        assert all(np.array_equal(x, y) for x, y in zip(once, twice))


def test_gpu_worker_preload_builds_the_kind_of_model_it_is_told(dreammover_home, monkeypatch):
    """DREAMMOVER_PRELOAD_BACKEND=svd preloads an SVD keyframe model into the worker's one-model holder."""
    from types import SimpleNamespace

    import torch

    from dreammover_tasks import gpu_worker
    from dreammover_tasks.models import MODELS
    from dreammover_tasks.svd import LoadedSVD

    built = []
    monkeypatch.setattr(LoadedSVD, "__init__",
                        lambda self, spec: built.append(spec.model) or setattr(self, "spec", spec)
                        or setattr(self, "dm", SimpleNamespace(device=torch.device("cpu"))))
    monkeypatch.setattr(LoadedSVD, "identity", property(lambda self: "svd:" + self.spec.model))
    worker = SimpleNamespace(state=SimpleNamespace(nthreads=1), address="inproc://w")
    try:
        gpu_worker.ModelHost("tiny-svd", backend="svd").setup(worker)
        assert built == ["tiny-svd"] and isinstance(MODELS.resident()[-1], LoadedSVD)
    finally:
        MODELS.clear()
