"""Clip presets in the pipeline (`run-pair` / `run-archive --preset`): the clip is built by the studio's code
(dreammover.presets.build_clip) from the cached frames, the preset is part of the clip's fingerprint (a new
preset re-encodes, renders nothing), and without a preset fingerprints are those of before presets existed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from dreammover import InterpolationConfig
from fault_harness import FAST, CallCounter, distinct_pair


def test_the_preset_is_in_the_fingerprint_only_when_there_is_one():
    from dreammover_flows.pair import clip_preset
    from dreammover_tasks.artifacts import clip_fingerprint

    args = ({"image0": "a"}, {"model": "m"}, InterpolationConfig(**FAST), 10.0, "mp4")
    plain = clip_fingerprint(*args)
    assert clip_fingerprint(*args, None) == plain  # summaries written before presets stay up to date
    square, reel = clip_preset("square-loop", "x.mp4"), clip_preset("reel", "x.mp4")
    assert len({plain, clip_fingerprint(*args, square), clip_fingerprint(*args, reel)}) == 3
    assert square["format"] == "mp4" and clip_preset("square-loop", "x.gif")["format"] == "gif"
    with pytest.raises(ValueError, match="unknown preset 'tiktok'"):
        clip_preset("tiktok", "x.mp4")


def test_archive_with_a_preset_reencodes_from_the_cache_with_the_studios_code(prefect_env, tiny_model_dir,
                                                                               monkeypatch, tmp_path):
    from dreammover.presets import build_clip, get_preset
    from dreammover.video import read_video
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.artifacts import get_images
    from dreammover_tasks.models import ModelSpec

    distinct_pair(tmp_path / "src" / "p0", 0)
    calls = CallCounter(monkeypatch, "fit_lora", "denoise")
    run = dict(source=str(tmp_path / "src"), output=str(tmp_path / "out"), cache=str(tmp_path / "cache"),
               model=ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32"),
               config=InterpolationConfig(**FAST))
    assert interpolate_archive(**run)["done"] == 1
    rendered = dict(calls.counts)

    report = interpolate_archive(preset="square-loop", **run)
    (entry,) = report["pairs"]
    assert entry["status"] == "done" and calls.counts == rendered  # re-encoded only: nothing fitted or denoised
    summary = json.loads((tmp_path / "out" / "p0.json").read_text())
    preset = get_preset("square-loop")
    assert summary["preset"] == "square-loop" and summary["fps"] == preset.fps
    clip = read_video(tmp_path / "out" / "p0.mp4")
    expected = build_clip(get_images(summary["cache"]["frames"]), preset)
    assert len(clip) == len(expected) == preset.frame_count(FAST["num_frames"] + 2)
    assert clip[0].shape == expected[0].shape == (1080, 1080, 3)
    assert max(np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(clip, expected)) < 4  # H.264 only
    assert interpolate_archive(preset="square-loop", **run)["skipped"] == 1  # up to date with its preset


def test_cli_refuses_an_unknown_preset_before_any_work(tmp_path):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    distinct_pair(tmp_path / "src" / "p0", 0)
    for args in (["run-archive", str(tmp_path / "src"), "-o", str(tmp_path / "out")],
                 ["run-pair", str(tmp_path / "src" / "p0" / "0.png"), str(tmp_path / "src" / "p0" / "1.png"),
                  "-o", str(tmp_path / "clip.mp4")]):
        result = CliRunner().invoke(app, [*args, "--preset", "tiktok", "--model", "tiny"])
        assert result.exit_code == 2 and "unknown preset 'tiktok'" in result.output, result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.mp4"))
