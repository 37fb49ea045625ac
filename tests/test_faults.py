"""Fault injection into the real components: a failing and then absent S3 server, eight racing archive
runs, a full disk, a SIGKILLed Dask worker. Each test checks the *result* (clips, summaries, leases,
counted renders), not only that nothing crashed. See docs/reliability.md for the fault table.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dreammover import InterpolationConfig
from fault_harness import FAST, CallCounter, distinct_pair, faulty_s3_env

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture
def config():
    return InterpolationConfig(**FAST)


def _report(state) -> dict:
    """The archive run's report, whether it ended Completed or Failed/Partial."""
    if state.is_completed():
        return state.result()
    return state.result(raise_on_failure=False).report


def _statuses(report: dict) -> dict[str, str]:
    return {e["pair"]: e["status"] for e in report["pairs"]}


# -- failing storage ----------------------------------------------------------------------------------


@pytest.fixture
def faulty_s3(monkeypatch, tmp_path):
    with faulty_s3_env(monkeypatch, tmp_path, seed=7) as env:
        yield env


def _keys(client, bucket: str, prefix: str = "") -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_failing_storage_completes_or_fails_only_exhausted_pairs_and_rerun_does_the_rest(
        prefect_env, model, config, faulty_s3, monkeypatch, tmp_path, caplog):
    """6 pairs on S3 through a proxy that fails 10% of requests (503 SlowDown / reset) and goes down for 30 s."""
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks import leases

    proxy, direct = faulty_s3
    for i in range(6):
        for path in distinct_pair(tmp_path / "src" / f"p{i}", i):
            direct.put_object(Bucket="inputs", Key=f"arch/p{i}/{path.name}", Body=path.read_bytes())
    # Leases renewed every 10 s: the 30 s outage makes renewals fail, while a lease lives 30 s past
    # its last renewal, so a lease the run still holds must survive the outage.
    monkeypatch.setattr(leases, "TTL", 30.0)
    fits = CallCounter(monkeypatch, "fit_lora")
    run = dict(source="s3://inputs/arch", output="s3://outputs/arch", model=model, config=config,
               cache="s3://cache/arch")

    def outage_once_two_clips_exist():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len([k for k in _keys(direct, "outputs", "arch/")
                                                   if k.endswith(".mp4")]) < 2:
            time.sleep(0.5)
        proxy.outage(30)
    trigger = threading.Thread(target=outage_once_two_clips_exist, daemon=True)
    proxy.fail_share = 0.1
    trigger.start()
    first = _report(interpolate_archive(return_state=True, **run))
    trigger.join(timeout=5)
    proxy.fail_share = 0.0
    assert proxy.counts["down"] > 0 and proxy.counts["slow_down"] > 0 and proxy.counts["reset"] > 0, proxy.counts

    statuses = _statuses(first)
    assert set(statuses) == {f"p{i}" for i in range(6)} and "skipped" not in statuses.values(), first["pairs"]
    for entry in first["pairs"]:  # done, or failed with the storage reason once its retries ran out
        if entry["status"] == "failed":
            assert "cannot" in entry["reason"] or "Storage" in entry["reason"], entry
    clips = {k for k in _keys(direct, "outputs", "arch/") if k.endswith(".mp4")}
    assert clips == {f"arch/{p}.mp4" for p, s in statuses.items() if s == "done"}
    assert not any("lost" in r.getMessage() for r in caplog.records), "a failed heartbeat dropped a lease"
    assert _keys(direct, "outputs", "arch/_leases/") == [], "leases left behind"

    second = _report(interpolate_archive(return_state=True, **run))  # storage healthy again, right after
    missing = {p for p, s in statuses.items() if s != "done"}
    assert {p for p, s in _statuses(second).items() if s == "done"} == missing
    assert {p for p, s in _statuses(second).items() if s == "skipped"} == set(statuses) - missing
    assert second["failed"] == 0
    third = _report(interpolate_archive(return_state=True, **run))  # no fingerprint recorded mid-outage
    assert set(_statuses(third).values()) == {"skipped"}, third["pairs"]

    keys = _keys(direct, "outputs", "arch/")
    assert [k for k in keys if k.endswith(".mp4")] == [f"arch/p{i}.mp4" for i in range(6)]
    assert [k for k in keys if k.endswith(".json") and "/_" not in k] == [f"arch/p{i}.json" for i in range(6)]
    assert not [k for k in keys if ".partial" in k or "/_leases/" in k], keys
    assert fits["fit_lora"] <= 6 + proxy.counts["down"], fits.counts  # a retried fit, never a second render


# -- concurrent runs ----------------------------------------------------------------------------------


def test_eight_concurrent_runs_render_every_pair_exactly_once(prefect_env, model, config, monkeypatch, tmp_path):
    from dreammover_flows.archive import interpolate_archive

    for i in range(16):
        distinct_pair(tmp_path / "src" / f"p{i:02d}", i)
    fits = CallCounter(monkeypatch, "fit_lora")
    run = dict(source=str(tmp_path / "src"), output=str(tmp_path / "out"), model=model, config=config,
               cache=str(tmp_path / "cache"))
    reports, errors = [], []

    def one_run():
        try:
            reports.append(_report(interpolate_archive(return_state=True, **run)))
        except BaseException as err:  # noqa: BLE001 - surfaced below
            errors.append(err)
    threads = [threading.Thread(target=one_run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)
    assert not errors and len(reports) == 8, errors

    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("*.mp4")) == [f"p{i:02d}.mp4" for i in range(16)]
    assert fits["fit_lora"] == 16, fits.counts  # every pair rendered exactly once
    assert sum(r["done"] for r in reports) == 16
    assert not list(out.glob("_leases/*")), "leases left behind"
    assert not list(out.rglob(".*.partial"))
    for report in reports:
        # No run says "ok" for a clip that was not there when it said so.
        assert report["failed"] == 0 and report["status"] == "ok", report["pairs"]
        written = Path(report["report"]).stat().st_mtime
        for entry in report["pairs"]:
            assert (out / f"{entry['pair']}.mp4").stat().st_mtime <= written, (entry, "clip missing at report time")


# -- full disk ------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs (root only; skipped, saying why, where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_fails_with_a_clear_reason_and_leaves_no_truncated_object(small_disk, tmp_path):
    from dreammover_tasks.storage import LocalStorage, StorageError

    store = LocalStorage(small_disk)
    store.write_bytes("small.bin", b"x" * 1024)
    with pytest.raises(StorageError) as err:
        store.write_bytes("big.bin", os.urandom(4 * 1024 * 1024))
    assert "No space left on device" in str(err.value) and str(small_disk / "big.bin") in str(err.value)
    assert not (small_disk / "big.bin").exists()
    assert [p.name for p in small_disk.iterdir()] == ["small.bin"]  # no temporary file left either
    with pytest.raises(StorageError):
        store.create("lease.json", os.urandom(4 * 1024 * 1024))
    assert sorted(p.name for p in small_disk.iterdir()) == ["small.bin"]
    assert store.read_bytes("small.bin") == b"x" * 1024


def test_full_disk_during_an_archive_fails_the_pair_with_the_reason(prefect_env, model, config, small_disk,
                                                                    tmp_path):
    from dreammover_flows.archive import interpolate_archive

    distinct_pair(tmp_path / "src" / "p0", 0)
    (small_disk / "filler").write_bytes(b"\0" * (3 * 1024 * 1024 - 8 * 1024))  # 8 KiB left
    state = interpolate_archive(source=str(tmp_path / "src"), output=str(small_disk / "out"), model=model,
                                config=config, cache=str(tmp_path / "cache"), return_state=True)
    report = _report(state)
    (entry,) = report["pairs"]
    assert entry["status"] == "failed" and "No space left on device" in entry["reason"], entry
    out = small_disk / "out"
    assert not (out / "p0.mp4").exists() and not (out / "p0.json").exists()
    assert not [p for p in out.rglob("*") if p.is_file() and ".partial" in p.name]


# -- killed worker --------------------------------------------------------------------------------------


@pytest.fixture
def process_pool():
    """Two Dask worker processes as the GPU pool is deployed (GPU=1 each, the worker preload), with nannies."""
    from distributed import Client, LocalCluster

    from dreammover_flows.runners import GPU, WORKER_PRELOAD

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, resources=GPU, dashboard_address=None,
                      preload=[WORKER_PRELOAD]) as cluster, Client(cluster) as client:
        yield cluster, client


SEEN: set = set()


def _kill_a_worker_in_a_model_step(client, step: str, killed: list, seconds: float = 600) -> None:
    """SIGKILL the worker process that runs a task whose key names `step`, as soon as one does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for address, keys in client.processing().items():
            SEEN.update(str(k) for k in keys)
            if any(step in str(k) for k in keys):
                pid = client.run(os.getpid, workers=[address])[address]
                os.kill(pid, signal.SIGKILL)
                killed.append((address, pid, [str(k) for k in keys]))
                return
        time.sleep(0.05)


def test_killed_worker_mid_step_gives_the_same_frames_one_clip_and_no_partial(prefect_env, model, config,
                                                                             process_pool, tmp_path):
    from dreammover.video import read_video
    from dreammover_flows.archive import interpolate_archive

    cluster, client = process_pool
    for i in range(2):
        distinct_pair(tmp_path / "src" / f"p{i}", i)
    common = dict(source=str(tmp_path / "src"), model=model, config=config, dask=cluster.scheduler_address)
    calm = _report(interpolate_archive(output=str(tmp_path / "calm"), cache=str(tmp_path / "cache-calm"),
                                       return_state=True, **common))
    assert calm["done"] == 2

    killed: list = []
    # A pair per worker: each pair's model work (fit, chunks, decode) is one render_frames task on the pool.
    killer = threading.Thread(target=_kill_a_worker_in_a_model_step, args=(client, "render_frames", killed),
                              daemon=True)
    killer.start()
    hit = _report(interpolate_archive(output=str(tmp_path / "hit"), cache=str(tmp_path / "cache-hit"),
                                      return_state=True, **common))
    killer.join(timeout=5)
    assert killed, f"no worker was killed: no render_frames task ran on the pool (saw {sorted(SEEN)[:20]})"
    assert hit["done"] == 2 and hit["failed"] == 0, hit["pairs"]
    for i in range(2):
        a, b = read_video(tmp_path / "calm" / f"p{i}.mp4"), read_video(tmp_path / "hit" / f"p{i}.mp4")
        assert len(a) == len(b) == FAST["num_frames"] + 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    out = tmp_path / "hit"
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["p0.json", "p0.mp4", "p1.json", "p1.mp4"]
    assert not list(out.glob("_leases/*"))
    assert not [p for p in tmp_path.rglob("*") if ".partial" in p.name]
