"""Incremental scheduled runs with the real discovery (issue #18): run-archive --discover on a generated archive
(tests/discover_archive.py), then ONE new photo extending a burst: only that burst's new pair is rendered."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

pytest.importorskip("dreammover.discover")

from discover_archive import T0, make_archive, scene, subject, view, write_photo  # noqa: E402
from flow_helpers import fits, model, run_cli as _cli  # noqa: F401 - fixtures

FAST = dict(size=64, num_frames=2, frames_per_batch=2, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)
SIZE = (320, 240)


def _extend_first_burst(src) -> str:
    """One more photo of the archive's first burst, 0.8 s after its last: camera and subject moved on."""
    w, h = SIZE
    new = "DCIM/IMG_0250.JPG"
    rgb = view(scene(10, (2 * w, 2 * h)), (3 * (w // 8), 24), SIZE, subject(1, h // 8), (w // 2, h // 6), noise=1.5)
    write_photo(src / new, rgb, T0 + timedelta(seconds=2.2), "Canon", "EOS R5", offset="+02:00")
    return new


def _photos(entry: dict) -> set[str]:
    return set(entry.get("keyframes") or (entry["image0"], entry["image1"]))


def test_a_new_photo_re_pairs_only_the_burst_it_extends(prefect_env, model, fits, tmp_path):
    from dreammover_flows.archive_discover import MANIFEST_KEY, STATE_KEY

    src, out = tmp_path / "photos", tmp_path / "clips"
    arc = make_archive(src, SIZE)
    (tmp_path / "c.json").write_text(json.dumps(FAST))
    args = ["run-archive", str(src), "-o", str(out), "--discover", "--model", model.model, "--device", "cpu",
            "--config", str(tmp_path / "c.json"), "--cache", str(tmp_path / "cache")]

    result = _cli(args)
    assert result.exit_code == 0, result.output
    first = json.loads((out / MANIFEST_KEY).read_text())["pairs"]
    assert {tuple(sorted(_photos(e))) for e in first} == {tuple(sorted(p)) for p in arc.pairs}
    assert fits[0] == len(arc.pairs) and all((out / f"{e['id']}.mp4").is_file() for e in first)
    seen = json.loads((out / STATE_KEY).read_text())["discover"]["seen"]
    assert set(arc.bursts[0]) <= set(seen)

    result = _cli(args)  # nothing new: no pair discovered, nothing fitted
    assert result.exit_code == 0, result.output
    assert fits[0] == len(arc.pairs) and '"done": 0' in result.output

    new = _extend_first_burst(src)
    result = _cli(args)
    assert result.exit_code == 0, result.output
    again = json.loads((out / MANIFEST_KEY).read_text())["pairs"]
    assert again and all(set(_photos(e)) <= set(arc.bursts[0]) | {new} for e in again)  # that burst only
    report = json.loads(next(line for line in result.output.splitlines() if line.startswith('{"status"')))
    assert report["done"] == 1 and report["failed"] == 0  # the new pair; the burst's others are up to date
    assert fits[0] == len(arc.pairs) + 1
    assert new in json.loads((out / STATE_KEY).read_text())["discover"]["seen"]


def test_a_chained_burst_a_new_photo_extends_is_one_longer_clip_reusing_its_segments(prefect_env, model, fits,
                                                                                   tmp_path):
    from dreammover.video import read_video
    from dreammover_flows.archive_discover import MANIFEST_KEY

    src, out = tmp_path / "photos", tmp_path / "clips"
    arc = make_archive(src, SIZE)
    frames = 6  # 2 in-betweens at least per segment: enough for the 4 keyframes the burst will have
    (tmp_path / "c.json").write_text(json.dumps({**FAST, "num_frames": frames}))
    args = ["run-archive", str(src), "-o", str(out), "--discover", "--chain", "--model", model.model, "--device",
            "cpu", "--config", str(tmp_path / "c.json"), "--cache", str(tmp_path / "cache")]

    result = _cli(args)
    assert result.exit_code == 0, result.output
    entries = json.loads((out / MANIFEST_KEY).read_text())["pairs"]
    (chain,) = [e for e in entries if e.get("keyframes")]
    assert chain["keyframes"] == arc.bursts[0]  # the 3-photo burst, in capture order
    assert fits[0] == len(arc.pairs)  # one LoRA per segment: as many as the pairs it replaces
    assert len(read_video(out / f"{chain['id']}.mp4")) == frames + 3

    new = _extend_first_burst(src)
    result = _cli(args)
    assert result.exit_code == 0, result.output
    (longer,) = json.loads((out / MANIFEST_KEY).read_text())["pairs"]
    assert longer["id"] == chain["id"] and longer["keyframes"] == arc.bursts[0] + [new]
    assert fits[0] == len(arc.pairs) + 1  # the two segments it had are reused from the cache: one new LoRA
    summary = json.loads((out / f"{chain['id']}.json").read_text())
    assert [s["lora"]["status"] for s in summary["segments"]] == ["reused", "reused", "computed"]
    assert len(read_video(out / f"{chain['id']}.mp4")) == frames + 4


def test_a_state_recorded_for_another_source_is_not_used(tmp_path):
    import logging

    from dreammover.discover import DiscoverState
    from dreammover_flows.archive_discover import STATE_KEY, load_state
    from dreammover_tasks.storage import open_storage

    out = open_storage(tmp_path / "out")
    state = DiscoverState(source=open_storage(tmp_path / "elsewhere").uri(), seen={"a.jpg": "1"})
    out.write_bytes(STATE_KEY, json.dumps({"format": 1, "discover": state.model_dump(mode="json")}).encode())
    here = open_storage(tmp_path / "photos").uri()
    known, pending, version, why = load_state(out, logging.getLogger("t"), here)
    assert known is None and version and "another source" in why
    known, *_ = load_state(out, logging.getLogger("t"), state.source)
    assert known.seen == {"a.jpg": "1"}
