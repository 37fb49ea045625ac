"""Incremental scheduled runs (issue #18): run-archive --discover renders only what is new since the state
in the output, and keeps that state by compare-and-swap.

The discovery here is a stand-in that keeps D1's contract (briefs/discover_api.md: discover(source, config,
known) -> pairs of the bursts a new photo touches, and the new state), so these tests check the archive's
side alone: the state it passes, stores and recovers; tests/test_incremental_discover.py runs the real one.
"""
from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path, PurePosixPath
from typing import Optional

import pytest
from PIL import Image
from pydantic import BaseModel

from test_chain import scene
from flow_helpers import fits, model  # noqa: F401 - fixtures

FAST = dict(size=64, num_frames=2, frames_per_batch=2, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)


class DiscoverConfig(BaseModel):
    burst_gap_s: float = 3.0
    chain: bool = False


class DiscoverState(BaseModel):
    seen: dict[str, str] = {}
    bursts: dict[str, list[str]] = {}


class Result(BaseModel):
    pairs: list[dict]
    rejected: list[dict] = []
    photos_report: list[dict] = []
    state: DiscoverState


def fake_discover_module(calls: list) -> types.ModuleType:
    """The contract's discover: bursts are the photos named <burst>_<n>.png; pairs only where a photo is new."""
    from dreammover_tasks.storage import open_storage

    def discover(source: str, config=DiscoverConfig(), known: Optional[DiscoverState] = None, progress=None):
        calls.append(known)
        listed = open_storage(source).list_info()
        seen = dict(known.seen) if known else {}
        bursts: dict[str, list[str]] = {}
        for key in sorted(listed):
            bursts.setdefault(PurePosixPath(key).stem.split("_")[0], []).append(key)
        pairs = []
        for burst, keys in bursts.items():
            new = {k for k in keys if seen.get(k) != listed[k].version}
            for i, (a, b) in enumerate(zip(keys, keys[1:])):
                if new & {a, b} or (new and config.chain):
                    pairs.append({"id": burst if i == 0 else f"{burst}-{i + 1}", "image0": a, "image1": b})
        state = DiscoverState(seen={k: i.version for k, i in listed.items()}, bursts=bursts)
        return Result(pairs=pairs, state=state)

    def write_manifest(result, uri):
        from dreammover_tasks.storage import write_uri

        write_uri(uri, json.dumps({"pairs": result.pairs}).encode())

    module = types.ModuleType("dreammover.discover")
    module.DiscoverConfig, module.DiscoverState, module.discover = DiscoverConfig, DiscoverState, discover
    module.write_manifest = write_manifest
    return module


@pytest.fixture
def discovery(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "dreammover.discover", fake_discover_module(calls))
    return calls


def _photo(path: Path, x: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(scene(x, seed=seed)).save(path)


def _run(source: Path, out: Path, model, tmp_path):
    from dreammover.config import InterpolationConfig
    from dreammover_flows.archive import interpolate_archive

    state = interpolate_archive(str(source), str(out), config=InterpolationConfig(**FAST), model=model,
                                cache=str(tmp_path / "cache"), discover=True, return_state=True)
    report = state.result(raise_on_failure=False)
    return getattr(report, "report", report)


def _statuses(report) -> dict:
    return {e["pair"]: e["status"] for e in report["pairs"]}


def test_discover_run_renders_only_what_a_new_photo_touches(prefect_env, discovery, model, fits, tmp_path):
    from dreammover_flows.archive_discover import STATE_KEY

    src, out = tmp_path / "photos", tmp_path / "clips"
    for name, x, seed in (("a_1", 4, 0), ("a_2", 30, 0), ("b_1", 10, 1), ("b_2", 40, 1)):
        _photo(src / f"{name}.png", x, seed)

    report = _run(src, out, model, tmp_path)
    assert _statuses(report) == {"a": "done", "b": "done"} and fits[0] == 2
    assert discovery[-1] is None  # no state yet: everything is new
    state = json.loads((out / STATE_KEY).read_text())
    assert sorted(state["discover"]["seen"]) == ["a_1.png", "a_2.png", "b_1.png", "b_2.png"]
    assert state["pending"] == []

    report = _run(src, out, model, tmp_path)  # nothing new: an empty run, not an error
    assert report["status"] == "empty" and fits[0] == 2
    assert sorted(discovery[-1].seen) == sorted(state["discover"]["seen"])  # the saved state came back

    _photo(src / "b_3.png", 70, 1)  # one new photo extends burst b
    report = _run(src, out, model, tmp_path)
    assert _statuses(report) == {"b-2": "done"} and fits[0] == 3  # only the new pair; a is not looked at
    assert "b_3.png" in json.loads((out / STATE_KEY).read_text())["discover"]["seen"]


def test_a_pair_that_fails_stays_pending_and_a_corrupt_state_rescans(prefect_env, discovery, model, fits,
                                                                    tmp_path):
    from dreammover_flows.archive_discover import STATE_KEY

    src, out = tmp_path / "photos", tmp_path / "clips"
    _photo(src / "a_1.png", 4)
    _photo(src / "a_2.png", 30)
    (src / "c_1.png").write_bytes(b"not a png")  # discover pairs it by name; rendering it fails
    _photo(src / "c_2.png", 30, 2)

    report = _run(src, out, model, tmp_path)
    assert _statuses(report) == {"a": "done", "c": "failed"}
    state = json.loads((out / STATE_KEY).read_text())
    assert [e["id"] for e in state["pending"]] == ["c"]

    _photo(src / "c_1.png", 4, 2)  # fixed in place: a new version, and the pending entry is retried either way
    report = _run(src, out, model, tmp_path)
    assert _statuses(report) == {"c": "done"}
    assert json.loads((out / STATE_KEY).read_text())["pending"] == []

    (src / "d_1.png").write_bytes(b"not a png")  # a failed pair whose photo is then deleted: no longer pending
    _photo(src / "d_2.png", 30, 3)
    assert _statuses(_run(src, out, model, tmp_path)) == {"d": "failed"}
    (src / "d_1.png").unlink()
    assert _run(src, out, model, tmp_path)["status"] == "empty"
    assert json.loads((out / STATE_KEY).read_text())["pending"] == []

    (out / STATE_KEY).write_text("{ truncated")  # corrupt: warn, discover everything again, skip what is rendered
    done_fits = fits[0]
    report = _run(src, out, model, tmp_path)
    assert discovery[-1] is None
    assert _statuses(report) == {"a": "skipped", "c": "skipped"} and fits[0] == done_fits
    assert json.loads((out / STATE_KEY).read_text())["format"] == 1  # rewritten whole


def test_load_state_names_the_unreadable_object(discovery, tmp_path, caplog):
    from dreammover_flows.archive_discover import STATE_KEY, load_state
    from dreammover_tasks.storage import open_storage

    out = open_storage(tmp_path)
    assert load_state(out, logging.getLogger("t")) == (None, [], None, None)
    out.write_bytes(STATE_KEY, b'{"format": 1, "discover": {"seen": 3}}')
    with caplog.at_level(logging.WARNING):
        state, pending, version, why = load_state(out, logging.getLogger("t"))
    assert state is None and version and STATE_KEY in why
    assert "discovering the whole source again" in caplog.text and STATE_KEY in caplog.text


def test_save_state_is_a_compare_and_swap(discovery, tmp_path):
    from dreammover_flows.archive_discover import STATE_KEY, Discovered, save_state
    from dreammover_tasks.storage import open_storage

    out, log = open_storage(tmp_path), logging.getLogger("t")
    mine = Discovered(pairs=[], entries={}, state=DiscoverState(seen={"x.png": "1"}), version=None)
    assert save_state(out, mine, {}, log)
    assert not save_state(out, mine, {}, log)  # created by another run meanwhile: not overwritten
    _, version = out.get_versioned(STATE_KEY)
    out.write_bytes(STATE_KEY, json.dumps({"format": 1, "discover": {"seen": {"y.png": "2"}}}).encode())
    stale = Discovered(pairs=[], entries={}, state=DiscoverState(seen={"z.png": "3"}), version=version)
    assert not save_state(out, stale, {}, log)  # replaced by another run after we read it: theirs is kept
    assert json.loads(out.read_bytes(STATE_KEY))["discover"]["seen"] == {"y.png": "2"}
    _, version = out.get_versioned(STATE_KEY)
    fresh = Discovered(pairs=[], entries={"p": {"id": "p"}}, state=DiscoverState(seen={"z.png": "3"}),
                       version=version)
    assert save_state(out, fresh, {"p": {"status": "failed"}}, log)
    doc = json.loads(out.read_bytes(STATE_KEY))
    assert doc["discover"]["seen"] == {"z.png": "3"} and doc["pending"] == [{"id": "p"}]


@pytest.mark.parametrize("extra,message", [
    (["--gap", "2"], "--gap and --chain go with --discover"),
    (["--chain"], "--gap and --chain go with --discover"),
    (["--discover", "--manifest", "m.json"], "either --manifest or --discover"),
])
def test_run_archive_discover_misuse_exits_2_before_any_work(tmp_path, extra, message):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["run-archive", str(tmp_path), "-o", str(tmp_path / "out"), *extra])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()
