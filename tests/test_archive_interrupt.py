"""An archive that gives up on pool work cancels it on the Dask scheduler (a real in-process LocalCluster).

Without that, the model tasks already queued for a pair that timed out, or for every pair of an
interrupted run, would still run on the GPUs. A stub "model step" blocks on an event, so a test
sees which tasks ever started.
"""
from __future__ import annotations

import threading
import time

import pytest
from prefect import flow, task

STARTED: list[int] = []
GATE = threading.Event()


def _slow(i: int) -> int:
    STARTED.append(i)
    GATE.wait(30)  # bounded: a regression makes the test fail slowly, never hang
    return i


@task(name="slow-model-step")
def slow_model_step(i: int) -> int:
    return _slow(i)


@flow(name="stub-pair")
def stub_pair(image0, image1, output, pair_id=None, dask=None, **params):
    """Stands in for interpolate_pair: four model tasks on the pool, waited for one after the other."""
    futures = [slow_model_step.submit(i) for i in range(4)]
    return [f.result() for f in futures]


@pytest.fixture
def cluster():
    from distributed import LocalCluster

    STARTED.clear()
    GATE.clear()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        try:
            yield c
        finally:
            GATE.set()  # free the worker thread still inside a (cancelled) task


def _tagged(cluster, unfinished_only=True):
    from dreammover_flows.runners import _UNFINISHED, POOL_TAG

    return [ts for ts in list(cluster.scheduler.tasks.values()) if POOL_TAG in (ts.annotations or {})
            and (ts.state in _UNFINISHED or not unfinished_only)]


def test_cancel_pool_work_cancels_only_the_tagged_pair_or_run(cluster):
    from distributed import Client

    from dreammover_flows.runners import cancel_pool_work, tag_pool_work

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        with tag_pool_work("run-1", "dog"):
            dog = [client.submit(_slow, i, pure=False) for i in range(3)]
        with tag_pool_work("run-1", "cat"):
            cat = [client.submit(_slow, 10 + i, pure=False) for i in range(2)]
        with tag_pool_work("run-2", "dog"):
            other_run = client.submit(_slow, 20, pure=False)
        untagged = client.submit(_slow, 99, pure=False)
        for _ in range(100):
            if len(_tagged(cluster)) == 6 and STARTED:
                break
            time.sleep(0.05)
        assert cancel_pool_work(cluster.scheduler_address, "run-1", "dog") == 3
        assert cancel_pool_work(cluster.scheduler_address, "run-1", "dog") == 0
        assert {f.status for f in dog} == {"cancelled"} and {f.status for f in cat} == {"pending"}
        assert cancel_pool_work(cluster.scheduler_address, "run-1") == 2
        assert {f.status for f in cat} == {"cancelled"}
        GATE.set()
        assert other_run.result(timeout=10) == 20 and untagged.result(timeout=10) == 99
        assert sorted(STARTED) == [0, 20, 99]  # of run-1, only the task already running ever started


def test_collect_cancels_the_work_of_a_pair_that_timed_out():
    from dreammover_flows.archive import _collect
    from dreammover_tasks.ingest import PairSpec

    class Running:  # a run-pair task that never finishes
        state = type("S", (), {"is_final": staticmethod(lambda: False)})()

        def wait(self, timeout=None):
            pass

    cancelled, entries = [], {}
    pair = PairSpec(id="dog", image0="a/0.png", image1="a/1.png")
    _collect(pair, Running(), time.monotonic(), entries, cancelled.append)
    assert entries["dog"]["reason"] == "timed out (pair_timeout)" and cancelled == ["dog"]


def test_interrupted_archive_leaves_nothing_of_its_run_on_the_pool(prefect_env, cluster, monkeypatch, tmp_path):
    import dreammover_flows.archive as archive

    for side in ("0", "1"):
        (tmp_path / "src" / "dog").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "dog" / f"{side}.png").write_bytes(b"x")

    def crashes_while_waiting(*args, **kwargs):  # the archive dies while it waits on the pair
        # Until the pair's four steps are queued and the first runs (up to 60 s: on a loaded CI
        # machine the stub pair flow took more than 10 s to start).
        for _ in range(1200):
            if len(_tagged(cluster)) == 4 and STARTED:
                break
            time.sleep(0.05)
        assert len(_tagged(cluster)) == 4 and STARTED == [0], "the stub pair never queued its steps"
        # (A real SIGTERM, TerminationSignal, takes the same path, but Prefect then re-sends the
        # signal to the process, which would end the test session.)
        raise RuntimeError("archive run interrupted")

    monkeypatch.setattr(archive, "interpolate_pair", stub_pair)
    monkeypatch.setattr(archive, "_wait_any", crashes_while_waiting)
    state = archive.interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"),
                                        dask=cluster.scheduler_address, parallel_pairs=1, pair_timeout=600,
                                        return_state=True)
    assert state.is_failed() and "archive run interrupted" in state.message
    assert len(_tagged(cluster, unfinished_only=False)) in (0, 4)  # they were tagged (or are forgotten)
    assert _tagged(cluster) == []  # nothing of the run queued or processing
    assert STARTED == [0]  # the three queued model steps never ran
    assert not (tmp_path / "out" / "_leases" / "dog.json").exists()


EVENTS: list[tuple[str, str, float]] = []
LAST_ENDED = threading.Event()


@flow(name="stub-timed-pair")
def timed_pair(image0, image1, output, pair_id=None, dask=None, **params):
    """Stands in for interpolate_pair: pair 'a' runs until pair 'd' has ended (30 s at most); records start/end."""
    EVENTS.append(("start", pair_id, time.monotonic()))
    if pair_id == "a":
        LAST_ENDED.wait(30)  # refilling the window in submission order would start c, d only after a
    EVENTS.append(("end", pair_id, time.monotonic()))
    if pair_id == "d":
        LAST_ENDED.set()
    return {"output": output, "seconds": 0.0, "stages": {}}


def test_pool_window_is_refilled_by_whichever_pair_ends_first(prefect_env, cluster, monkeypatch, tmp_path):
    import dreammover_flows.archive as archive

    for pair in "abcd":
        (tmp_path / "src" / pair).mkdir(parents=True)
        for side in ("0", "1"):
            (tmp_path / "src" / pair / f"{side}.png").write_bytes(b"x")
    EVENTS.clear()
    LAST_ENDED.clear()
    monkeypatch.setattr(archive, "interpolate_pair", timed_pair)
    state = archive.interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"),
                                        dask=cluster.scheduler_address, parallel_pairs=2, return_state=True)
    assert state.is_completed(), state.message
    at = {(kind, pair): t for kind, pair, t in EVENTS}
    # Two at a time, but the slow pair 'a' does not hold its slot's successors back: b, c and d
    # all start (and end) while 'a' runs. Refilling in submission order would start c only after a.
    assert all(at[("start", p)] < at[("end", "a")] for p in "bcd"), EVENTS
    assert sum(kind == "start" for kind, _, _ in EVENTS) == 4
    assert state.result()["done"] == 4
