"""`dreammover interpolate --backend svd` end to end on the tiny SVD, offline; bad input is one line, exit 2."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import fixture_pair

FAST = {"num_inference_steps": 2, "noise_injection_steps": 1, "guidance_scale": 1.0}


@pytest.fixture()
def wide():
    return fixture_pair("wide")


def _run(args):
    from dreammover.cli import app

    return CliRunner().invoke(app, ["interpolate", *map(str, args)])


def test_interpolate_svd_writes_an_mp4_with_n_plus_2_frames(wide, tmp_path, dreammover_home):
    from dreammover.video import read_video

    cfg = tmp_path / "svd.json"
    cfg.write_text(json.dumps(FAST))
    out = tmp_path / "clip.mp4"
    res = _run([wide / "0.png", wide / "1.png", "-o", out, "--backend", "svd", "--model", "tiny-svd",
                "--frames", "4", "--size", "128", "--config", cfg, "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    frames = read_video(out)
    assert len(frames) == 4 + 2 and frames[0].shape == (64, 128, 3)  # 16:9 frame, sides rounded to 64


def test_interpolate_svd_bad_inputs_are_one_line(wide, tmp_path, dreammover_home):
    bad_cfg = tmp_path / "bad.json"
    bad_cfg.write_text(json.dumps({"lora_steps": 3}))  # a DreamMover field: not an SVD one
    no_weights = tmp_path / "w.json"
    no_weights.write_text(json.dumps({"backward_weights": str(tmp_path / "none.safetensors")}))
    cases = [
        ([tmp_path / "missing.png", wide / "1.png"], "file not found"),
        ([wide / "0.png", wide / "1.png", "--config", bad_cfg], "bad configuration"),
        ([wide / "0.png", wide / "1.png", "--model", "no-such-org/no-such-svd"], "HF_HUB_OFFLINE=1"),
        ([wide / "0.png", wide / "1.png", "--model", tmp_path], "not a diffusers SVD model"),
        ([wide / "0.png", wide / "1.png", "--backend", "nope"], "unknown backend"),
        ([wide / "0.png", wide / "1.png", "--model", "tiny-svd", "--config", no_weights], "weights not found"),
    ]
    for args, message in cases:
        backend = [] if "--backend" in args else ["--backend", "svd"]
        res = _run([*args, "-o", tmp_path / "x.mp4", *backend, "-q"])
        assert res.exit_code == 2, (args, res.output)
        assert message in res.output and "Traceback" not in res.output
        assert not (tmp_path / "x.mp4").exists()


def test_bench_scores_the_svd_backend_beside_a_baseline(tmp_path, monkeypatch, dreammover_home):
    import shutil

    from dreammover.cli import _register_plugins, app

    _register_plugins()
    pairs = tmp_path / "pairs"
    shutil.copytree(fixture_pair("dog"), pairs / "dog", ignore=shutil.ignore_patterns("*.mp4"))
    cfg = tmp_path / "svd.json"
    cfg.write_text(json.dumps(FAST))
    monkeypatch.setenv("DREAMMOVER_SVD_MODEL", "tiny-svd")
    monkeypatch.setenv("DREAMMOVER_SVD_CONFIG", str(cfg))
    res = CliRunner().invoke(app, ["bench", str(pairs), "-o", str(tmp_path / "report"), "--methods", "svd,crossfade",
                                   "--size", "64", "--frames", "2", "--hf-pairs", "0", "-q"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "report" / "metrics.json").read_text())["rows"]
    svd = next(r for r in rows if r["method"] == "svd")
    assert svd["frames"] == 4 and svd["size"] == "64x64" and svd["unet_evals"]["denoise"] == 3 * 2 * 4
    assert (tmp_path / "report" / "clips" / "dog" / "svd.mp4").stat().st_size > 0
