"""`dreammover restyle` and `interpolate --restyle` on the tiny text-to-video model, offline.

Bad input is one line and exit 2 before the text-to-video model loads; with the same source and target
prompt the latents never move, so the output does not depend on --steps; another prompt changes it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

FRAMES, H, W = 5, 64, 96


def _app():
    from dreammover.restyle.cli import register

    app = typer.Typer()
    app.callback()(lambda: None)  # a command group, as in the real CLI (one lone command would be the app)
    register(app)
    return app


def _restyle(*args):
    return CliRunner().invoke(_app(), ["restyle", *map(str, args)])


@pytest.fixture()
def clip(tmp_path):
    """A short moving-square clip (an mp4 at 12 fps)."""
    from dreammover.video import write_video

    frames = []
    for i in range(FRAMES):
        f = np.full((H, W, 3), 40, np.uint8)
        f[16:40, 8 + 10 * i:32 + 10 * i] = (200, 120, 30)
        frames.append(f)
    return write_video(frames, tmp_path / "in.mp4", fps=12)


@pytest.fixture()
def no_model_load(monkeypatch):
    """Fails the test if anything loads the text-to-video model."""
    from dreammover import restyle as rs

    def refuse(*a, **kw):
        raise AssertionError("the text-to-video model was loaded for a bad input")
    monkeypatch.setattr(rs, "load_t2v", refuse)


def test_bad_inputs_exit_2_with_one_line_before_the_model_loads(clip, tmp_path, no_model_load):
    import cv2

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    small_mask = tmp_path / "mask.png"
    cv2.imwrite(str(small_mask), np.full((H // 2, W // 2), 255, np.uint8))
    out = tmp_path / "out.mp4"
    base = ["-o", out, "--model", "tiny-t2v", "--source-prompt", "a photo of a dog"]
    cases = [
        ([text, *base, "--target-prompt", "a tiger"], "no frames"),
        ([empty, *base, "--target-prompt", "a tiger"], "no frames"),
        ([tmp_path / "missing.mp4", *base, "--target-prompt", "a tiger"], "file not found"),
        ([clip, *base, "--target-prompt", "a tiger", "--max-frames", FRAMES - 1], "frames"),
        ([clip, *base, "--target-prompt", "a tiger", "--mask", small_mask], "mask"),
        ([clip, *base, "--target-prompt", "   "], "target prompt"),
        ([clip, *base, "--target-prompt", "a tiger", "--box", "1,2,3"], "--box"),
        ([clip, *base, "--target-prompt", "a tiger", "--box", "0,0,8,8;0,0,8,8"], "2 boxes for 5 frames"),
        ([clip, *base, "--target-prompt", "a tiger", "--box", "0,0,8,8", "--mask", small_mask], "not both"),
        ([clip, "-o", tmp_path / "out.avi", "--target-prompt", "a tiger"], "unsupported output format"),
    ]
    for args, message in cases:
        res = _restyle(*args)
        assert res.exit_code == 2, (args, res.output)
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (args, res.output)
        assert not out.exists()


def test_an_edit_that_cannot_fit_is_refused_before_it_starts(clip, tmp_path, monkeypatch, dreammover_home):
    from dreammover import restyle as rs
    from dreammover.restyle import preflight

    def refuse(*a, **kw):
        raise AssertionError("the edit started although it cannot fit")
    monkeypatch.setattr(rs, "restyle", refuse)
    monkeypatch.setattr(preflight, "available_memory", lambda device: 1024)  # a device with 1 KiB free
    res = _restyle(clip, "-o", tmp_path / "out.mp4", "--model", "tiny-t2v", "--target-prompt", "a tiger",
                   "--device", "cpu", "-q")
    assert res.exit_code == 2 and "does not fit" in res.output and "--checkpointing" in res.output, res.output
    assert not (tmp_path / "out.mp4").exists()


def test_same_prompt_output_does_not_depend_on_steps_and_another_prompt_changes_it(clip, tmp_path,
                                                                                     dreammover_home):
    from dreammover.video import read_video

    common = ["--model", "tiny-t2v", "--source-prompt", "a photo of a dog", "--device", "cpu"]
    outs = {}
    for name, target, steps in (("s2", "a photo of a dog", 2), ("s5", "a photo of a dog", 5),
                                ("tiger", "an oil painting of a tiger", 2)):
        outs[name] = tmp_path / f"{name}.mp4"
        quiet = ["-q"] if name != "tiger" else []
        res = _restyle(clip, "-o", outs[name], "--target-prompt", target, "--steps", steps, *common, *quiet)
        assert res.exit_code == 0, res.output
        assert f"wrote {outs[name]} ({FRAMES} frames at 12 fps" in res.output  # the input's fps is kept
        # the preflight and the progress bar over the iterations, unless --quiet
        assert ("plan: restyle 5 frames" in res.output and f"{steps}/{steps}" in res.output) is not bool(quiet)
    s2, s5, tiger = (np.stack(read_video(outs[n])).astype(int) for n in ("s2", "s5", "tiger"))
    assert s2.shape == (FRAMES, H, W, 3)  # frame count and size kept
    assert np.array_equal(s2, s5)  # the latents never moved: the VAE round trip whatever --steps is
    assert np.abs(tiger - s2).mean() > 1.0  # another target prompt edits the clip


def test_interpolate_restyle_writes_a_restyled_clip_with_the_right_frame_count(tiny_model_dir, tmp_path):
    from dreammover.cli import app
    from dreammover.sample import write_sample_pair
    from dreammover.video import read_video

    im0, im1 = write_sample_pair(tmp_path / "pair", 64)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({"lora_steps": 2, "lora_rank": 4, "num_inference_steps": 10, "inversion_steps": 4,
                               "feature_step": 2}))
    common = [im0, im1, "--model", tiny_model_dir, "--frames", 3, "--size", 64, "--config", cfg,
              "--device", "cpu", "-q"]
    plain, styled = tmp_path / "plain.mp4", tmp_path / "styled.mp4"
    res = CliRunner().invoke(app, ["interpolate", *map(str, [*common, "-o", plain])])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["interpolate", *map(str, [
        *common, "-o", styled, "--restyle", "a watercolour", "--restyle-source", "a ball",
        "--restyle-model", "tiny-t2v", "--restyle-steps", 2])])
    assert res.exit_code == 0, res.output
    a, b = read_video(plain), read_video(styled)
    assert len(b) == len(a) == 3 + 2 and b[0].shape == a[0].shape
    assert np.abs(np.stack(a).astype(int) - np.stack(b).astype(int)).mean() > 1.0  # it was restyled


def test_interpolate_restyle_keeps_the_interpolation_when_the_t2v_model_cannot_load(tiny_model_dir, tmp_path):
    from dreammover.cli import app
    from dreammover.sample import write_sample_pair
    from dreammover.video import read_video

    im0, im1 = write_sample_pair(tmp_path / "pair", 64)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({"lora_steps": 1, "lora_rank": 4, "num_inference_steps": 10, "inversion_steps": 2,
                               "feature_step": 1}))
    out = tmp_path / "styled.mp4"
    res = CliRunner().invoke(app, ["interpolate", *map(str, [
        im0, im1, "--model", tiny_model_dir, "--frames", 2, "--size", 64, "--config", cfg, "--device", "cpu", "-q",
        "-o", out, "--restyle", "a watercolour", "--restyle-model", tmp_path / "no-such-model"])])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    kept = tmp_path / "styled.interpolated.mp4"
    assert "no-such-model" in res.output and str(kept) in res.output
    assert not out.exists() and len(read_video(kept)) == 2 + 2


def test_interpolate_restyle_refuses_an_empty_prompt_before_interpolating(tmp_path, monkeypatch):
    from dreammover.cli import app
    from dreammover.pipeline import DreamMover
    from dreammover.sample import write_sample_pair

    def refuse(*a, **kw):
        raise AssertionError("the interpolation model was loaded for a bad --restyle")
    monkeypatch.setattr(DreamMover, "from_pretrained", refuse)
    im0, im1 = write_sample_pair(tmp_path / "pair", 64)
    for extra, message in ((["--restyle", " "], "target prompt is empty"),
                           (["--restyle", "x", "--frames", "300", "--max-frames", "300"], "at most")):
        res = CliRunner().invoke(app, ["interpolate", str(im0), str(im1), "-o", str(tmp_path / "x.mp4"),
                                       "--model", "tiny", *extra])
        assert res.exit_code == 2 and message in res.output, res.output
        assert "Traceback" not in res.output
