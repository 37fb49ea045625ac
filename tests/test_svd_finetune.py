"""Alg. 1 on the tiny SVD: only W_v / W_o of temporal self-attention change; weights round-trip into sampling."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from dreammover.backends.finetune import FinetuneSettings, find_videos, finetune_backward, sample_clip
from dreammover.backends.temporal_attention import WEIGHT_SUFFIXES, temporal_attention_layers


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two frame folders (a square moving right / down) and one short clip that is too short to use."""
    import cv2

    root = tmp_path_factory.mktemp("videos")
    for name, (dx, dy) in {"right": (6, 0), "down": (0, 4)}.items():
        (root / name).mkdir()
        for i in range(7):
            im = np.full((48, 96, 3), 40, np.uint8)
            x, y = 10 + dx * i, 8 + dy * i
            im[y:y + 12, x:x + 12] = (230, 200, 40)
            cv2.imwrite(str(root / name / f"{i:03d}.png"), im)
    (root / "short").mkdir()
    cv2.imwrite(str(root / "short" / "000.png"), np.zeros((48, 96, 3), np.uint8))
    return root


@pytest.fixture(scope="module")
def svd(dreammover_home):
    from dreammover.backends import load_backend

    return load_backend("svd", "tiny-svd", device="cpu", dtype="fp32")


def test_frame_sampling_takes_n_frames_with_stride_from_long_enough_videos(videos):
    found = find_videos(videos, 5)
    assert [p.name for p, _ in found] == ["down", "right"]
    s = FinetuneSettings(num_frames=3, stride=2)
    clip = sample_clip(found, s, np.random.default_rng(0))
    assert len(clip) == 3
    # the square moves 2 source frames between sampled frames: stride 2 of a 6 px / 4 px per-frame motion
    centres = [np.argwhere(f[..., 1] > 150).mean(0) for f in clip]
    steps = {tuple(np.round(b - a).astype(int)) for a, b in zip(centres, centres[1:])}
    assert steps in ({(0, 12)}, {(8, 0)})
    with pytest.raises(FileNotFoundError, match="at least 99 frames"):
        find_videos(videos, 99)


def test_finetuning_changes_only_wv_and_wo(svd, videos):
    unet = svd.components.unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    s = FinetuneSettings(num_frames=3, steps=2, size=64, lr=1e-2)
    weights, losses = finetune_backward(svd, videos, s)
    assert len(losses) == 2 and all(np.isfinite(losses))
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)     # the forward model f_θ is untouched
    tuned = weights.state()
    expected = {f"{layer}.{suf}" for layer in temporal_attention_layers(unet) for suf in WEIGHT_SUFFIXES}
    assert set(tuned) == expected                                     # W_v and W_o of every temporal attn1 ...
    assert all(not torch.equal(tuned[k], before[k]) for k in tuned)  # ... and every one of them moved
    assert all(p.grad is None for p in unet.parameters())             # no gradient reached other weights


def test_finetune_command_writes_weights_that_sampling_loads(svd, videos, tmp_path, dreammover_home):
    from safetensors import safe_open

    from dreammover.backends.cli import register
    from dreammover.backends.svd_config import SVDKeyframeConfig

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps typer in multi-command mode
    out = tmp_path / "w.safetensors"
    res = CliRunner().invoke(app, ["finetune-backward", str(videos), "-o", str(out), "--model", "tiny-svd",
                                   "--frames", "3", "--steps", "1", "--size", "64", "--device", "cpu", "-q"])
    assert res.exit_code == 0, res.output
    with safe_open(str(out), "pt") as fh:
        assert fh.metadata()["format"].startswith("dreammover-backward") and len(fh.keys()) == 20
    cfg = SVDKeyframeConfig(num_frames=1, size=64, num_inference_steps=1, guidance_scale=1.0,
                            backward_weights=str(out))
    svd.use_backward_model(cfg)
    assert svd.control.backward_weights is not None
    assert svd.control.rotated_layers == frozenset(temporal_attention_layers(svd.components.unet))
    bad = CliRunner().invoke(app, ["finetune-backward", str(tmp_path / "none"), "-o", str(out), "--model",
                                   "tiny-svd"])
    assert bad.exit_code == 2 and "not a folder of videos" in bad.output


def test_frames_are_read_from_video_files_too(tmp_path):
    from dreammover.backends.finetune import read_frames
    from dreammover.video import write_video

    frames = []
    for i in range(8):
        im = np.full((48, 96, 3), 30, np.uint8)
        im[10:26, 4 + 8 * i:20 + 8 * i] = 240
        frames.append(im)
    write_video(frames, tmp_path / "v" / "clip.mp4", fps=8)
    assert find_videos(tmp_path / "v", 8) == [(tmp_path / "v" / "clip.mp4", 8)]
    got = read_frames(tmp_path / "v" / "clip.mp4", 1, 3, 2)  # source frames 1, 3, 5
    xs = [np.argwhere(f[..., 0] > 150)[:, 1].mean() for f in got]
    assert np.allclose(np.diff(xs), 16, atol=1.5) and abs(xs[0] - (11.5 + 8)) < 1.5
