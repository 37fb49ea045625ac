"""A chained burst through the archive (issue #18): a manifest's keyframes entry -> one clip, one summary."""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from test_chain import scene
from flow_helpers import fits, model, run_cli as _cli  # noqa: F401 - fixtures

FAST = dict(size=64, num_frames=4, frames_per_batch=4, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)


def _photo(path: Path, x: int, seed: int = 0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene(x, seed=seed)).save(path)
    return path.name


def test_manifest_keyframes_entry_parses_and_reports_bad_entries(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    (tmp_path / "m.json").write_text(json.dumps({"pairs": [
        {"id": "burst", "keyframes": ["a.jpg", "b.jpg", "c.jpg"], "motions": [0.2, 0.1]},
        {"id": "two", "keyframes": ["a.jpg", "b.jpg"]},
        {"id": "one", "keyframes": ["a.jpg"]},
        {"id": "badmotion", "keyframes": ["a.jpg", "b.jpg", "c.jpg"], "motions": [1.0]},
    ]}))
    specs = {p.id: p for p in discover_pairs(str(tmp_path), str(tmp_path / "m.json"))}
    burst = specs["burst"]
    assert burst.problem is None and burst.motions == [0.2, 0.1]
    assert [Path(k).name for k in burst.keyframes] == ["a.jpg", "b.jpg", "c.jpg"]
    assert (burst.image0, burst.image1) == (burst.keyframes[0], burst.keyframes[-1])
    assert specs["two"].keyframes is None and Path(specs["two"].image1).name == "b.jpg"  # a plain pair
    assert "at least two" in specs["one"].problem
    assert "one per segment" in specs["badmotion"].problem


def test_keyframes_manifest_renders_one_clip_and_reruns_follow_every_keyframe(prefect_env, model, fits, tmp_path):
    from dreammover.video import read_video

    src, out = tmp_path / "src", tmp_path / "out"
    burst = [_photo(src / f"b{i}.png", x) for i, x in enumerate((4, 30, 60))]
    pair = [_photo(src / f"p{i}.png", x, seed=1) for i, x in enumerate((10, 40))]
    (tmp_path / "m.json").write_text(json.dumps([{"id": "burst", "keyframes": burst},
                                                 {"id": "pair", "image0": pair[0], "image1": pair[1]}]))
    (tmp_path / "c.json").write_text(json.dumps(FAST))
    args = ["run-archive", str(src), "-o", str(out), "--manifest", str(tmp_path / "m.json"), "--model", model.model,
            "--device", "cpu", "--config", str(tmp_path / "c.json"), "--cache", str(tmp_path / "cache")]

    result = _cli(args)
    assert result.exit_code == 0, result.output
    assert fits[0] == 3  # two segments, each with its own LoRA, and the pair
    assert len(read_video(out / "burst.mp4")) == FAST["num_frames"] + 3  # shared keyframe once
    assert len(read_video(out / "pair.mp4")) == FAST["num_frames"] + 2
    summary = json.loads((out / "burst.json").read_text())
    assert summary["keyframes"] == 3 and summary["frames"] == FAST["num_frames"] + 3
    assert sum(s["frames"] for s in summary["segments"]) == FAST["num_frames"]
    assert [s["lora"]["status"] for s in summary["segments"]] == ["computed", "computed"]
    assert len(summary["inputs"]["versions"]) == 3
    assert not list(out.glob("burst-*")) and sorted(p.name for p in out.glob("*.mp4")) == ["burst.mp4", "pair.mp4"]

    result = _cli(args)  # nothing changed: both skipped, nothing fitted
    assert result.exit_code == 0, result.output
    assert fits[0] == 3 and "skipped  burst" in result.output and "skipped  pair" in result.output

    # The MIDDLE keyframe changes (neither image0 nor image1): the chain's fingerprint covers it, so the burst
    # re-renders; its segments are content-keyed, and both touch the changed photo, so both refit.
    _photo(src / burst[1], 34)
    result = _cli(args)
    assert result.exit_code == 0, result.output
    assert fits[0] == 5 and "done     burst" in result.output and "skipped  pair" in result.output


def test_chain_on_a_dask_pool_fans_segments_out_and_renders_the_same_frames(prefect_env, model, fits, tmp_path):
    import numpy as np

    from dreammover.config import InterpolationConfig
    from dreammover_flows.pair import interpolate_pair
    from dreammover_tasks.artifacts import get_images

    keys = [str(tmp_path / _photo(tmp_path / f"k{i}.png", x)) for i, x in enumerate((4, 30, 60))]
    run = dict(image0=keys[0], image1=keys[-1], keyframes=keys, model=model, cache=str(tmp_path / "cache"),
               config=InterpolationConfig(**{**FAST, "frames_per_batch": "auto"}))
    here = interpolate_pair(output=str(tmp_path / "here.mp4"), **run)
    # On a pool of 2, the lone chain's segments split their δ frames over both workers (fit-pair, chunks,
    # decode as separate pool tasks); the LoRAs come from the cache, the chunks are rendered again.
    pool = interpolate_pair(output=str(tmp_path / "pool.mp4"), dask="local:2", refresh="frames", **run)
    assert fits[0] == 2 and pool["stages"]["lora"]["status"] == "reused"
    assert pool["stages"]["denoise"]["computed"] == pool["stages"]["denoise"]["chunks"] == 4  # 2 per segment
    a, b = get_images(here["cache"]["frames"]), get_images(pool["cache"]["frames"])
    assert len(a) == len(b) == FAST["num_frames"] + 3 == pool["frames"]
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1
