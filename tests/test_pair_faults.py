"""Storage faults in the pair and archive flows (issue #15 items 5, 6): retries on every storage task and
storage call, no empty photo version in a fingerprint, leasing errors that fail one pair, no missing
clip reported as ok. Faults go into real components: moto_server behind fault_harness.FaultyProxy, real files.
"""
from __future__ import annotations

import time

import pytest

from fault_harness import faulty_s3_env


@pytest.fixture
def faulty_s3(monkeypatch, tmp_path):
    with faulty_s3_env(monkeypatch, tmp_path, buckets=("inputs", "outputs"), seed=3) as env:
        yield env


def _storage_tasks():
    """Every Prefect task of the pipeline modules that reads or writes storage."""
    import importlib

    from prefect import Task

    found = {}
    for module in ("dreammover_tasks.ingest", "dreammover_tasks.prepare", "dreammover_tasks.encode", "dreammover_tasks.upload", "dreammover_tasks.fit_pair", "dreammover_tasks.render",
                   "dreammover_tasks.denoise", "dreammover_tasks.decode", "dreammover_tasks.svd"):
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Task):
                found[value.name] = value
    return found


def test_every_storage_task_retries_transient_failures():
    """prepare-images and encode-clip had no retries: one refused connection failed the pair in an outage."""
    from dreammover_tasks.retry import retry_if_transient

    found = _storage_tasks()
    assert {"prepare-images", "publish-clip", "fit-pair", "render-frames"} <= set(found)
    lacking = sorted(name for name, t in found.items()
                     if t.retries < 3 or t.retry_condition_fn is not retry_if_transient)
    assert lacking == [], f"storage tasks without transient retries: {lacking}"


def test_photo_inputs_raises_on_a_storage_error_instead_of_an_empty_version(faulty_s3):
    """An empty version taken mid-outage went into the fingerprint, so every later run re-rendered the pair."""
    from dreammover_tasks.ingest import photo_inputs
    from dreammover_tasks.storage import StorageError

    proxy, direct = faulty_s3
    direct.put_object(Bucket="inputs", Key="dog/0.png", Body=b"zero")
    direct.put_object(Bucket="inputs", Key="dog/1.png", Body=b"one")
    healthy = photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png")
    assert all(healthy["versions"]) and healthy["versions"][0] != healthy["versions"][1]
    # A photo that is not there is "missing" (''), not an error: the pair flow reports it.
    assert photo_inputs("s3://inputs/dog/0.png", "s3://inputs/cat/1.png")["versions"][1] == ""

    proxy.outage(600)
    with pytest.raises(StorageError, match="inputs/dog/0.png"):
        photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png", attempts=1)
    assert proxy.counts["down"] > 0
    proxy.down_until = 0.0  # back up: the same versions as before the outage
    assert photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png") == healthy


# -- leases under faults: one pair fails, a clip held by another run is waited for --------------------


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


def _report(state) -> dict:
    return state.result() if state.is_completed() else state.result(raise_on_failure=False).report


def _entries(report: dict) -> dict[str, dict]:
    return {e["pair"]: e for e in report["pairs"]}


def test_a_storage_error_while_leasing_fails_that_pair_only(prefect_env, model, tmp_path):
    """The lease key of p1 is a folder (a real local fault: reading it fails): p1 fails naming the lease and
    the storage error; p0 still runs (here: into its bad photo). Before, the whole archive crashed."""
    from dreammover_flows.archive import interpolate_archive

    for pid in ("p0", "p1"):
        (tmp_path / "src" / pid).mkdir(parents=True)
        (tmp_path / "src" / pid / "0.png").write_bytes(b"not an image")
        (tmp_path / "src" / pid / "1.png").write_bytes(b"not an image")
    (tmp_path / "out" / "_leases" / "p1.json").mkdir(parents=True)
    state = interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"), model=model,
                                cache=str(tmp_path / "cache"), return_state=True)
    assert state.is_failed()
    report = _report(state)
    entries = _entries(report)
    assert report["outcome"] == "finished", report  # not interrupted by the leasing error
    assert "lease" in entries["p1"]["reason"] and "StorageError" in entries["p1"]["reason"], entries["p1"]
    assert "cannot read" in entries["p1"]["reason"]
    assert "image" in entries["p0"]["reason"], entries["p0"]  # p0 was leased and rendered (its photo is bad)
    assert not (tmp_path / "out" / "_leases" / "p0.json").exists()


def test_a_pair_held_by_another_run_is_never_reported_ok_unless_its_clip_is_there(prefect_env, model, monkeypatch,
                                                                                  tmp_path):
    """Three pairs held by other runs: p0's run finishes while this run waits (skipped, done by it); p1's run
    holds it past the deadline (failed: held, not finished); p2's run died (its lease expires with no clip:
    this run takes it over and renders it). Before, all three were 'skipped, being rendered by another run'
    and the run ended Completed with two clips missing."""
    import json
    import threading

    from dreammover import InterpolationConfig
    from fault_harness import FAST, distinct_pair
    from dreammover_flows.archive import interpolate_archive
    from dreammover_flows.pair import fingerprint
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    monkeypatch.setattr(leases, "TTL", 20.0)  # polls every second
    config = InterpolationConfig(**FAST)
    for i in range(3):
        distinct_pair(tmp_path / "src" / f"p{i}", i)
    out = open_storage(tmp_path / "out")
    assert leases.acquire(out, "p0", "run-finishing", 60) is None
    assert leases.acquire(out, "p1", "run-stuck", 600) is None
    assert leases.acquire(out, "p2", "run-died", 1.0) is None  # never renewed

    def other_run_finishes_p0() -> None:
        time.sleep(2.0)
        src = tmp_path / "src" / "p0"
        out.write_bytes("p0.mp4", b"a clip by run-finishing")
        out.write_bytes("p0.json", json.dumps({"fingerprint": fingerprint(
            str(src / "0.png"), str(src / "1.png"), model, config, 10.0, "mp4")}).encode())
        assert leases.release(out, "p0", "run-finishing")

    finisher = threading.Thread(target=other_run_finishes_p0)
    finisher.start()
    state = interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"), model=model,
                                config=config, cache=str(tmp_path / "cache"), pair_timeout=30, return_state=True)
    finisher.join()
    report = _report(state)
    entries = _entries(report)
    assert not state.is_completed() and state.name == "Partial", (state.name, report["pairs"])
    assert entries["p0"]["status"] == "skipped" and "done by another run (run-finishing)" in entries["p0"]["reason"]
    assert entries["p1"]["status"] == "failed" and "held by run run-stuck, not finished" in entries["p1"]["reason"]
    assert entries["p2"]["status"] == "done", entries["p2"]
    assert (tmp_path / "out" / "p2.mp4").stat().st_size > 0
    # Only the stuck run's lease is left (still live); the died run's is this run's now and released.
    assert sorted(p.name for p in (tmp_path / "out" / "_leases").glob("*.json")) == ["p1.json"]


def test_expired_leases_of_dead_runs_are_swept_after_the_run(prefect_env, model, tmp_path):
    """A run that died left leases of pairs that are finished now; they stayed in the bucket forever."""
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    (tmp_path / "src").mkdir()
    out = open_storage(tmp_path / "out")
    assert leases.acquire(out, "gone/old", "run-died", 0.01) is None
    assert leases.acquire(out, "live", "run-alive", 600) is None
    time.sleep(0.05)
    report = _report(interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"), model=model,
                                         allow_empty=True, return_state=True))
    assert report["status"] == "empty"
    left = sorted(p.relative_to(tmp_path / "out" / "_leases").as_posix()
                  for p in (tmp_path / "out" / "_leases").rglob("*.json"))
    assert left == ["live.json"]  # a live lease of another run is never swept
