"""`dreammover bench` end to end on the tiny model: clips, tables, plots, report; bad pairs skipped, clips scored."""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import PAIRS

# A short schedule keeps the tiny-model runs to seconds; the stages are the paper's, only fewer steps.
FAST = {"num_inference_steps": 10, "inversion_steps": 4, "feature_step": 2, "lora_steps": 1}


@pytest.fixture(scope="module")
def app():
    from dreammover.cli import _register_plugins, app

    _register_plugins()
    return app


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """dog and lion (from ../shared, never copied into the project) plus one broken pair folder."""
    if not (PAIRS / "dog" / "0.png").exists() or not (PAIRS / "lion" / "0.png").exists():
        pytest.skip("../shared/fixtures/pairs is not present")
    root = tmp_path_factory.mktemp("pairs")
    for name in ("dog", "lion"):
        (root / name).mkdir()
        for f in ("0.png", "1.png"):
            os.symlink(PAIRS / name / f, root / name / f)
    (root / "broken").mkdir()
    shutil.copy(PAIRS / "dog" / "0.png", root / "broken" / "0.png")
    (root / "broken" / "1.png").write_bytes(b"not an image")
    (root / "lonely").mkdir()
    shutil.copy(PAIRS / "dog" / "0.png", root / "lonely" / "0.png")
    return root


@pytest.fixture(scope="module")
def bench_out(app, pairs_dir, tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("report")
    cfg = tmp_path_factory.mktemp("cfg") / "fast.json"
    cfg.write_text(json.dumps(FAST))
    res = CliRunner().invoke(app, [
        "bench", str(pairs_dir), "-o", str(out), "--model", str(tiny_model_dir), "--device", "cpu",
        "--dtype", "fp32", "--size", "64", "--frames", "2", "--lora-steps", "1", "--config", str(cfg),
        "--ablations", "all", "--lpips-weights", "random", "--fid-weights", "random", "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    return out


def test_bench_writes_report_with_images(bench_out):
    md = (bench_out / "report.md").read_text()
    for png in ("metrics.png", "timings.png", "hf_curves.png", "contact/dog.png", "contact/lion.png"):
        assert (bench_out / png).stat().st_size > 1000, png
        assert f"]({png})" in md, png
    for label in ("dreammover", "crossfade", "classic", "dreammover-no_lora", "dreammover-opencv_flow",
                  "dreammover-direct_fusion", "dreammover-no_ref_attention"):
        assert f"| {label} |" in md
        assert (bench_out / "clips" / "dog" / f"{label}.mp4").stat().st_size > 0


def test_bench_tables_hold_metrics_and_timings(bench_out):
    data = json.loads((bench_out / "metrics.json").read_text())
    rows = data["rows"]
    assert len(rows) == 2 * 7                                        # 2 good pairs x (3 methods + 4 ablations)
    for r in rows:
        assert r["frames"] == 4 and r["we"] >= 0 and r["we_mid"] >= 0 and r["hf_ratio"] > 0
        assert r["lpips"] is not None                                # the random trunk was asked for
    dm_row = next(r for r in rows if r["method"] == "dreammover")
    assert dm_row["unet_evals"]["denoise"] > 0 and dm_row["seconds"]["inversion"] > 0
    assert set(data["fid"]) == {r["method"] for r in rows}
    assert data["meta"]["we_scale"] == 100.0
    with (bench_out / "metrics.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == len(rows) and "sec_denoise" in table[0]
    curves = data["hf_curves"]["dog"]
    assert set(curves) == {"two_level", "direct"} and len(curves["two_level"]) == FAST["inversion_steps"]


def test_bench_reports_and_skips_bad_pairs(bench_out):
    data = json.loads((bench_out / "metrics.json").read_text())
    bad = {p["pair"] for p in data["problems"]}
    assert {"broken", "lonely"} <= bad
    assert not any(r["pair"] in bad for r in data["rows"])
    md = (bench_out / "report.md").read_text()
    assert "broken" in md and "lonely" in md


def test_bench_scores_existing_clips_and_names_skipped_metrics(app, pairs_dir, tmp_path, monkeypatch):
    from dreammover.images import load_image, prepare_pair
    from dreammover.video import write_video

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no_weights"))  # force: no LPIPS/FID weights anywhere
    a, b = prepare_pair(load_image(pairs_dir / "dog" / "0.png"), load_image(pairs_dir / "dog" / "1.png"), 128)
    steps = [a, a, a, b, b]                       # middle frames equal the inputs -> WE_mid ~0 up to codec noise
    wrong = np.ascontiguousarray(a[::-1])       # upside down: no flow explains it
    write_video(steps, tmp_path / "clips" / "dog" / "steps.mp4", fps=10)
    write_video([a, wrong, wrong, wrong, b], tmp_path / "clips" / "dog" / "flipped.mp4", fps=10)
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", str(pairs_dir), "-o", str(out), "--clips-dir", str(tmp_path / "clips"),
                                   "-q"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    data = json.loads((out / "metrics.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert set(rows) == {"steps", "flipped"} and rows["steps"]["frames"] == 5
    assert rows["steps"]["we_mid"] < 0.2 * rows["flipped"]["we_mid"], rows
    assert rows["steps"]["seconds_total"] is None          # no timings for clips made elsewhere
    assert "lpips" in data["skipped"] and "fid" in data["skipped"]
    assert "lpips skipped" in (out / "report.md").read_text()


def test_bench_rejects_unknown_method(app, pairs_dir, tmp_path):
    res = CliRunner().invoke(app, ["bench", str(pairs_dir), "-o", str(tmp_path), "--methods", "film"])
    assert res.exit_code != 0


def test_contact_frames_are_nearest_to_quarter_points():
    from dreammover.evaluation.runner import nearest_frames

    frames = [np.full((2, 2, 3), i, np.uint8) for i in range(9)]
    assert [int(f[0, 0, 0]) for f in nearest_frames(frames)] == [2, 4, 6]
