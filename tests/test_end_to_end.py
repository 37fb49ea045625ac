"""Two photos -> frames -> MP4 on the real dog pair with the tiny model, through the library and the CLI."""
import subprocess
import sys

import numpy as np
import pytest

from dreammover import InterpolationConfig
from dreammover.video import read_video, write_video


@pytest.fixture(scope="module")
def dog_result(tiny_dm, dog_pair):
    cfg = InterpolationConfig(size=64, num_frames=4, frames_per_batch=3)
    return tiny_dm.interpolate(*dog_pair, cfg), cfg


def test_dog_64px_gives_n_plus_2_frames_and_counts_each_stage_once(dog_result, tmp_path):
    result, cfg = dog_result
    assert len(result.frames) == 6
    assert all(f.shape == (64, 64, 3) and f.dtype == np.uint8 for f in result.frames)
    ev = result.unet_evals
    # LoRA fitted once on both images, inversion once per pair, one hooked feature pass, flow once.
    assert ev["lora"] == 2 * cfg.lora_steps
    assert ev["inversion"] == 2 * cfg.inversion_steps
    assert ev["features"] == 2
    # two chunks (3 + 1 frames), each with both endpoints: 2 passes at T + 29 plain steps
    assert ev["denoise"] == (3 + 2 + 1 + 2) * (cfg.inversion_steps + 1)
    assert set(result.seconds) >= {"prepare", "lora", "inversion", "flow", "denoise", "decode"}
    assert result.flows[0].shape == (2, 8, 8)
    assert len(result.lora_losses) == cfg.lora_steps
    out = write_video(result.frames, tmp_path / "clip.mp4", fps=10)
    frames = read_video(out)
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)


def test_preflight_counts_the_unet_passes_a_run_makes(dog_result):
    """The plan printed before a run (and its --max-frames message) counts what the run then does."""
    from dreammover.preflight import unet_passes

    result, cfg = dog_result
    ev = result.unet_evals
    planned = unet_passes(cfg)
    assert planned["lora"] == ev["lora"]
    assert planned["inversion"] == ev["inversion"] + ev["features"]
    assert planned["denoise"] == ev["denoise"]


def test_keep_inputs_puts_prepared_photos_at_the_ends(tiny_dm, dog_pair):
    cfg = InterpolationConfig(size=64, num_frames=1, lora=False, keep_inputs=True)
    result = tiny_dm.interpolate(*dog_pair, cfg)
    im0, im1 = tiny_dm.prepare(*dog_pair, cfg)
    assert np.array_equal(result.frames[0], im0) and np.array_equal(result.frames[-1], im1)
    assert "lora" not in result.unet_evals


def test_ablations_run_and_differ(tiny_dm, dog_pair):
    base = dict(size=64, num_frames=1, lora=False)
    mid = {}
    for name, extra in {"full": {}, "opencv": {"flow": "opencv"}, "direct": {"fusion": "direct"},
                        "splat": {"wta_mode": "splat"}}.items():
        r = tiny_dm.interpolate(*dog_pair, InterpolationConfig(**base, **extra))
        mid[name] = r.frames[1].astype(int)
        if name == "opencv":
            assert "features" not in r.unet_evals
        if name == "direct":
            assert r.unet_evals["denoise"] == 3 * 30  # no second pass at T
    assert all(np.abs(mid["full"] - mid[k]).max() > 0 for k in ("opencv", "direct", "splat"))


def _cli(*args, env_home):
    import os
    env = dict(os.environ, HF_HUB_OFFLINE="1", DREAMMOVER_HOME=str(env_home))
    return subprocess.run([sys.executable, "-m", "dreammover.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_cli_interpolate_writes_mp4_of_n_plus_2_frames(dog_pair, dreammover_home, tiny_model_dir, tmp_path):
    out = tmp_path / "out.mp4"
    r = _cli("interpolate", str(dog_pair[0]), str(dog_pair[1]), "-o", str(out), "--model", "tiny",
             "--frames", "4", "--size", "64", "-q", env_home=dreammover_home)
    assert r.returncode == 0, r.stderr
    assert len(read_video(out)) == 6
    assert "wrote" in r.stdout


def test_cli_bad_input_exits_nonzero_with_one_clear_message(dreammover_home, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("garbage")
    r = _cli("interpolate", str(bad), str(bad), "-o", str(tmp_path / "x.mp4"), "--model", "tiny",
             env_home=dreammover_home)
    assert r.returncode == 2
    assert "bad.png: not a readable image" in r.stderr and "Traceback" not in r.stderr
    r = _cli("interpolate", str(tmp_path / "missing.png"), str(bad), env_home=dreammover_home)
    assert r.returncode == 2 and "missing.png: file not found" in r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_cli_missing_model_is_one_line(dog_pair, dreammover_home, tmp_path):
    r = _cli("interpolate", str(dog_pair[0]), str(dog_pair[1]), "-o", str(tmp_path / "x.mp4"),
             "--model", "nobody/none", "-q", env_home=dreammover_home)
    assert r.returncode == 2
    assert "could not load model 'nobody/none'" in r.stderr and "Traceback" not in r.stderr


def test_half_precision_path_as_on_cuda(tiny_model_dir):
    """The fp16 path real users take on CUDA (fp32 LoRA adapter on an fp16 UNet, fp32 fusion) runs here on CPU."""
    import torch

    from dreammover import DreamMover
    from dreammover.lora import lora_parameters
    from dreammover.sample import sample_pair

    dm = DreamMover.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.float16)
    im0, im1 = sample_pair(64)
    r = dm.interpolate(im0, im1, InterpolationConfig(size=64, num_frames=1, lora_steps=3))
    assert dm.components.unet.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in lora_parameters(dm.components.unet))
    assert len(r.frames) == 3 and all(np.isfinite(f).all() and f.std() > 0 for f in r.frames)
