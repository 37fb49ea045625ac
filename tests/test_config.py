"""The config's defaults are the paper's; invalid combinations fail loudly; one place for file/env/flags."""
import json

import pytest
from pydantic import ValidationError

from dreammover import InterpolationConfig
from dreammover.config_io import load_config_file


def test_defaults_are_the_papers():
    c = InterpolationConfig()
    assert (c.num_inference_steps, c.inversion_steps, c.feature_step, c.feature_block) == (50, 30, 14, 1)
    assert (c.num_frames, c.lora_rank, c.lora_lr, c.lora_steps) == (32, 16, 5e-4, 80)
    assert (c.guidance_scale, c.splat_alpha, c.wta_mode, c.reference_blocks) == (1.0, 10.0, "select", 6)
    assert (c.flow, c.fusion, c.reference_attention, c.lora) == ("diffusion", "two_level", True, True)


def test_deltas_are_i_over_n_plus_one():
    assert InterpolationConfig(num_frames=3).deltas == [0.25, 0.5, 0.75]


def test_invalid_configs_rejected():
    with pytest.raises(ValidationError):
        InterpolationConfig(guidance_scale=7.5)
    with pytest.raises(ValidationError):
        InterpolationConfig(inversion_steps=60)
    with pytest.raises(ValidationError):
        InterpolationConfig(flow="raft-ish")
    with pytest.raises(ValidationError):
        InterpolationConfig(unknown_field=1)


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"num_frames": 5, "lora_rank": 8, "prompt": "a dog"}))
    monkeypatch.setenv("DREAMMOVER_CFG_LORA_RANK", "4")
    c = load_config_file(f, prompt="a cat")
    assert (c.num_frames, c.lora_rank, c.prompt) == (5, 4, "a cat")


def test_env_layer_reads_every_field_and_refuses_unknown_names(monkeypatch):
    from dreammover.config_io import env_values

    monkeypatch.setenv("DREAMMOVER_CFG_LORA", "false")
    monkeypatch.setenv("DREAMMOVER_CFG_FLOW", "farneback")
    c = load_config_file(None)
    assert (c.lora, c.flow) == (False, "farneback")
    monkeypatch.setenv("DREAMMOVER_CFG_FRAMES", "16")       # the field is num_frames: a typo must not pass silently
    with pytest.raises(ValueError, match="DREAMMOVER_CFG_FRAMES"):
        env_values()


def test_flow_field_offers_diffusion_dis_and_farneback():
    assert InterpolationConfig(flow="farneback").flow == "farneback"
    assert InterpolationConfig(flow="dis").flow == "dis"
    assert InterpolationConfig(flow="opencv").flow == "dis"  # the old name of the DIS ablation still works


def test_flow_field_selects_that_estimator():
    """DreamMover.estimate_flows dispatches on config.flow (no model needed for the classical estimators)."""
    from types import SimpleNamespace

    import torch

    from dreammover import DreamMover
    from dreammover.correspondence import estimate_flow_opencv
    from dreammover.sample import sample_pair

    a, b = sample_pair(64)
    stub = SimpleNamespace(device=torch.device("cpu"))
    got = {f: DreamMover.estimate_flows(stub, None, (a, b), (8, 8), InterpolationConfig(flow=f))[0]
           for f in ("dis", "farneback")}
    for f, flow in got.items():
        assert torch.equal(flow, estimate_flow_opencv(a, b, (8, 8), method=f)[0])
    assert not torch.equal(got["dis"], got["farneback"])


# -- every command: --config file < DREAMMOVER_CFG_* < explicit options -------------------------------------

@pytest.fixture
def cli_app():
    from dreammover.cli import _register_plugins, app

    _register_plugins()
    return app


@pytest.fixture
def stub_model(monkeypatch):
    """DreamMover.from_pretrained returns a stub that records the config it is asked to render with."""
    from types import SimpleNamespace

    import numpy as np

    from dreammover import pipeline

    seen = []

    class Stub:
        components = None

        def interpolate(self, im0, im1, config, progress=False):
            seen.append(config)
            return SimpleNamespace(frames=[np.zeros((64, 64, 3), np.uint8)] * (config.num_frames + 2), seconds={})

    monkeypatch.setattr(pipeline.DreamMover, "from_pretrained", classmethod(lambda cls, *a, **k: Stub()))
    return seen


@pytest.fixture
def pair_files(tmp_path):
    from PIL import Image

    from dreammover.sample import sample_pair

    paths = [tmp_path / "0.png", tmp_path / "1.png"]
    for p, im in zip(paths, sample_pair(64)):
        Image.fromarray(im).save(p)
    return paths


def _file(tmp_path, **fields):
    f = tmp_path / "cfg.json"
    f.write_text(json.dumps(fields))
    return f


def test_interpolate_honours_config_file_then_env_then_flags(cli_app, stub_model, pair_files, tmp_path,
                                                             monkeypatch):
    from typer.testing import CliRunner

    f = _file(tmp_path, num_frames=16, size=256, frames_per_batch=4, keep_inputs=True)
    base = ["interpolate", *map(str, pair_files), "-o", str(tmp_path / "o.mp4"), "--config", str(f), "-q"]
    run = lambda *extra: CliRunner().invoke(cli_app, [*base, *extra])  # noqa: E731
    r = run()
    assert r.exit_code == 0, r.output
    c = stub_model[-1]
    assert (c.num_frames, c.size, c.frames_per_batch, c.keep_inputs) == (16, 256, 4, True)  # the file, not 32/512/8
    monkeypatch.setenv("DREAMMOVER_CFG_NUM_FRAMES", "12")
    monkeypatch.setenv("DREAMMOVER_CFG_SIZE", "128")
    assert run().exit_code == 0
    c = stub_model[-1]
    assert (c.num_frames, c.size, c.frames_per_batch) == (12, 128, 4)                     # env over file
    assert run("--frames", "5", "--size", "64", "--frames-per-batch", "2", "--no-keep-inputs").exit_code == 0
    c = stub_model[-1]
    assert (c.num_frames, c.size, c.frames_per_batch, c.keep_inputs) == (5, 64, 2, False)  # flags over both


def test_bench_honours_config_file_then_env_then_flags(cli_app, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dreammover.evaluation import report, runner

    seen = []
    monkeypatch.setattr(runner, "run_bench", lambda s, log=print: seen.append(s.config) or runner.BenchResult())
    monkeypatch.setattr(report, "write_report", lambda result, s: s.out_dir / "report.md")
    f = _file(tmp_path, num_frames=16, size=256, lora_steps=4)
    base = ["bench", str(tmp_path), "-o", str(tmp_path / "rep"), "--methods", "crossfade", "--config", str(f), "-q"]
    run = lambda *extra: CliRunner().invoke(cli_app, [*base, *extra])  # noqa: E731
    assert run().exit_code == 0
    assert (seen[-1].num_frames, seen[-1].size, seen[-1].lora_steps) == (16, 256, 4)
    monkeypatch.setenv("DREAMMOVER_CFG_LORA_STEPS", "7")
    assert run().exit_code == 0
    assert (seen[-1].num_frames, seen[-1].lora_steps) == (16, 7)
    assert run("--frames", "3", "--lora-steps", "1").exit_code == 0
    assert (seen[-1].num_frames, seen[-1].size, seen[-1].lora_steps) == (3, 256, 1)


def test_bench_with_tiny_model_starts_from_quick_defaults_below_everything_given(cli_app, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dreammover.evaluation import report, runner

    seen = []
    monkeypatch.setattr(runner, "run_bench", lambda s, log=print: seen.append(s.config) or runner.BenchResult())
    monkeypatch.setattr(report, "write_report", lambda result, s: s.out_dir / "report.md")
    base = ["bench", str(tmp_path), "-o", str(tmp_path / "rep"), "--methods", "crossfade", "--model", "tiny"]
    r = CliRunner().invoke(cli_app, base)
    assert r.exit_code == 0 and "quick defaults" in r.output
    paper = InterpolationConfig()
    assert seen[-1].size < paper.size and seen[-1].num_frames < paper.num_frames
    assert seen[-1].lora_steps < paper.lora_steps
    r = CliRunner().invoke(cli_app, [*base, "--config", str(_file(tmp_path, size=256)), "--frames", "6"])
    assert r.exit_code == 0
    assert (seen[-1].size, seen[-1].num_frames) == (256, 6)
