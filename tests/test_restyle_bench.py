"""Restyle bench: the motion-fidelity metric's properties (OpenCV variant), and `dreammover bench --restyle`."""
from __future__ import annotations

import numpy as np
import pytest

from dreammover.evaluation.restyle_metrics import motion_fidelity, opencv_tracks


def _texture(size: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((size // 4, size // 4, 3)).astype(np.float32)
    return (255 * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)).astype(np.uint8)


def moving_clip(n: int = 10, size: int = 96, seed: int = 0) -> list[np.ndarray]:
    """A smooth texture moved along a random walk (2-3 px per step, changing direction): every point moves."""
    import cv2

    big, rng = _texture(2 * size, seed), np.random.default_rng(seed + 1)
    pos, out = np.array([size / 2, size / 2]), []
    for _ in range(n):
        m = np.float32([[1, 0, -pos[0]], [0, 1, -pos[1]]])
        out.append(cv2.warpAffine(big, m, (size, size), flags=cv2.INTER_LINEAR))
        angle = rng.uniform(0, 2 * np.pi)
        pos = pos + rng.uniform(2, 3) * np.array([np.cos(angle), np.sin(angle)])
    return out


@pytest.fixture(scope="module")
def clip():
    return moving_clip()


def test_tracks_follow_the_known_motion(clip):
    tracks = opencv_tracks(clip)
    assert len(tracks) > 20
    steps = np.diff(tracks, axis=1)  # every point moves with the texture: the same step for all
    error = np.linalg.norm(steps - np.median(steps, axis=0), axis=-1)
    assert np.percentile(error, 95) < 0.3 and np.linalg.norm(np.median(steps, axis=0), axis=-1).min() > 1.5


def test_identical_clips_score_one(clip):
    assert motion_fidelity(clip, [f.copy() for f in clip]) == pytest.approx(1.0, abs=1e-9)


def test_reversed_or_shuffled_motion_scores_lower(clip):
    same = motion_fidelity(clip, clip)
    reversed_ = motion_fidelity(clip, clip[::-1])
    order = np.random.default_rng(3).permutation(len(clip))
    shuffled = motion_fidelity(clip, [clip[i] for i in order])
    assert reversed_ < same - 0.3 and shuffled < same - 0.3, (reversed_, shuffled)


def test_a_uniformly_translated_copy_keeps_fidelity(clip):
    moved = [np.roll(f, (5, -7), axis=(0, 1)) for f in clip]  # the same motion, seen from another place
    assert motion_fidelity(clip, moved) > 0.97


def test_other_content_with_the_same_motion_keeps_fidelity(clip):
    other = moving_clip(seed=0)  # same walk ...
    recolored = [255 - f for f in other]  # ... other appearance, as an edit changes it
    assert motion_fidelity(clip, recolored) > 0.95


@pytest.fixture(scope="module")
def app():
    pytest.importorskip("dreammover.restyle", reason="the restyle library (branch restyle-core) is not merged here")
    from dreammover.cli import _register_plugins, app

    _register_plugins()
    return app


def _bench(app, *args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, ["bench", "--restyle", "--model", "tiny-t2v", "--device", "cpu", "--dtype", "fp32",
                                    "--steps", "2", *args])


def _table(output: str) -> dict[str, list[str]]:
    lines = [ln for ln in output.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return {c.strip(): dict(zip(head, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[1:]
            for c in [ln.strip("|").split("|")[0]]}


def test_bench_restyle_on_tiny_t2v_prints_every_variant(app, tmp_path, dreammover_home):
    import time

    start = time.perf_counter()
    res = _bench(app, "-o", str(tmp_path / "out"))
    took = time.perf_counter() - start
    assert res.exit_code == 0, res.output + repr(res.exception)
    rows = _table(res.stdout)
    assert list(rows) == ["full", "no S-SSM/T-SSM", "no T-SSM", "no mask"]
    for name, row in rows.items():
        assert float(row["s/iter"]) > 0 and row["peak memory (CPU peak RSS)"].endswith(" MiB"), row
        mf = row["motion fidelity (OpenCV LK tracks; not CoTracker)"]  # a random tiny VAE may leave no trackable point
        assert mf == "n/a (no point tracked through the whole clip)" or -1 <= float(mf) <= 1, row
        for metric in ("motion fidelity (CoTracker)", "CLIP text alignment", "CLIP frame consistency",
                       "LPIPS edit-vs-source", "LPIPS consecutive"):
            assert row[metric] == "n/a (no weights)", (name, metric, row)
    assert (tmp_path / "out" / "restyle.md").read_text().startswith("| variant |")
    assert took < 60, f"the tiny restyle bench took {took:.0f} s"


def _tiny_clip_folder(folder, tokenizer_dir):
    """A random CLIP (image + text towers) saved as a transformers folder: plumbing for the CLIP metrics."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                                      vocab_size=514, max_position_embeddings=77),
                     vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                                        num_attention_heads=4, image_size=32, patch_size=8), projection_dim=16)
    CLIPModel(cfg).save_pretrained(folder)
    image = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir)).save_pretrained(folder)
    return folder


def test_bench_restyle_scores_clip_and_both_lpips_with_local_weights(app, tmp_path, tiny_model_dir):
    clip_dir = _tiny_clip_folder(tmp_path / "clip", tiny_model_dir / "tokenizer")
    res = _bench(app, "--lpips-weights", "random", "--clip-model", str(clip_dir), "-q")
    assert res.exit_code == 0, res.output + repr(res.exception)
    row = _table(res.stdout)["full"]
    assert -1 <= float(row["CLIP text alignment"]) <= 1 and 0 < float(row["CLIP frame consistency"]) <= 1 + 1e-6
    lpips = {k: v for k, v in row.items() if k.startswith("LPIPS")}  # both readings, named with the weights
    assert sorted(lpips) == ["LPIPS consecutive (lpips-alex-random (plumbing only))",
                             "LPIPS edit-vs-source (lpips-alex-random (plumbing only))"]
    assert all(float(v) >= 0 for v in lpips.values())


def test_clip_metrics_properties(tiny_model_dir, tmp_path, clip):
    from dreammover.evaluation.restyle_metrics import clip_frame_consistency, load_clip_scorer

    scorer = load_clip_scorer(_tiny_clip_folder(tmp_path / "clip", tiny_model_dir / "tokenizer"))
    assert clip_frame_consistency(scorer, [clip[0]] * 4) == pytest.approx(1.0, abs=1e-5)  # identical frames
    assert clip_frame_consistency(scorer, [clip[0], 255 - clip[0]]) < 1 - 1e-4


@pytest.mark.parametrize("args, said", [
    (["--clip", "/nonexistent.mp4", "--target-prompt", "x"], "no such clip file"),
    (["--clip", "/nonexistent.mp4"], "--clip needs --target-prompt"),
    (["--clip-model", "/nonexistent"], "not a CLIP model folder"),
    (["some_pairs"], "--restyle takes no PAIRS_DIR"),
    (["--box", "1,2"], "box"),
])
def test_bench_restyle_bad_input_is_one_line_and_exit_2(app, args, said):
    res = _bench(app, *args)
    assert res.exit_code == 2 and said in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_bench_restyle_refuses_a_file_that_is_not_a_video(app, tmp_path):
    (tmp_path / "junk.mp4").write_text("not a video")
    res = _bench(app, "--clip", str(tmp_path / "junk.mp4"), "--target-prompt", "a cat")
    said = "junk.mp4: no frames could be read (not a video, or an empty one)"
    assert res.exit_code == 2 and said in res.output and len(res.output.strip().splitlines()) == 1, res.output
