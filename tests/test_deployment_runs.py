"""The archive's deployment path (issue #15 item 5): a deadline per pair, counted from when that pair's run
starts, and an interrupted archive that keeps the leases of the pair runs it did not cancel.

A real deployment on the Prefect test API; the test plays the work pool's worker by moving the pair runs
through Running and Completed itself (states set on the API, read back by the archive's own polling).
"""
from __future__ import annotations

import threading
import time

import pytest

from dreammover import InterpolationConfig


@pytest.fixture(scope="module")
def deployment(prefect_env) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("interpolate-pair")
        client.create_deployment(flow_id=flow_id, name="pairs-test")
    return "interpolate-pair/pairs-test"


def _pairs(n: int):
    from dreammover_tasks.ingest import PairSpec

    return [(PairSpec(id=f"p{i}", image0=f"/in/p{i}/0.png", image1=f"/in/p{i}/1.png"), f"/out/p{i}.mp4")
            for i in range(n)]


class Worker(threading.Thread):
    """Moves each pair run (found by its pair_id parameter) to Running at `start` s and Completed at `end` s."""

    def __init__(self, schedule: dict[str, tuple[float, float | None]]):
        super().__init__(daemon=True)
        self.schedule, self.stop, self.t0 = schedule, threading.Event(), time.monotonic()

    def run(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.states import Completed, Running

        done: set[tuple[str, str]] = set()
        with get_client(sync_client=True) as client:
            while not self.stop.wait(0.2):
                now = time.monotonic() - self.t0
                for run in client.read_flow_runs(limit=50):
                    pair = (run.parameters or {}).get("pair_id")
                    if pair not in self.schedule or (run.state and run.state.name == "Cancelling"):
                        continue
                    start, end = self.schedule[pair]
                    for step, at, state in (("run", start, Running), ("end", end, Completed)):
                        if at is not None and now >= at and (pair, step) not in done:
                            client.set_flow_run_state(run.id, state(), force=True)
                            done.add((pair, step))


def test_pair_timeout_counts_from_each_pair_runs_start(deployment, tmp_path):
    """p1 starts only after p0 ends (one worker): past one shared deadline, inside its own. p2 never starts."""
    from prefect import flow

    from dreammover_flows.deployment_runs import run_on_deployment
    from dreammover_tasks import leases
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.storage import open_storage

    entries, released = {}, []
    params = dict(config=InterpolationConfig(), model=ModelSpec(model="tiny"), fps=10.0, cache=None,
                  refresh="none", backend="dreammover")
    worker = Worker({"p0": (0.5, 2.0), "p1": (6.0, 9.0)})

    @flow
    def archive():
        with leases.LeaseKeeper(open_storage(tmp_path / "out"), "archive") as keeper:
            worker.start()
            run_on_deployment(_pairs(3), params, deployment, 5.0, entries, keeper, poll=0.3,
                              finished=released.append)

    archive()
    worker.stop.set()
    assert entries["p0"]["status"] == "done" and entries["p1"]["status"] == "done", entries
    assert entries["p2"]["status"] == "failed" and "not started" in entries["p2"]["reason"], entries["p2"]
    assert sorted(released) == ["p0", "p1", "p2"]


def test_an_interrupted_archive_keeps_the_leases_of_pair_runs_it_did_not_cancel(deployment, tmp_path):
    """The archive flow times out while p0 and p1 still run on workers: their leases stay (not renewed,
    expiring on their own), so no other archive renders them again meanwhile. p2 never got a lease here."""
    from prefect import flow

    from dreammover_flows.deployment_runs import run_on_deployment
    from dreammover_tasks import leases
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path / "out")
    params = dict(config=InterpolationConfig(), model=ModelSpec(model="tiny"), fps=10.0, cache=None,
                  refresh="none", backend="dreammover")
    worker = Worker({"p0": (0.3, None), "p1": (0.3, None)})
    entries = {}

    @flow(timeout_seconds=4)
    def archive():
        with leases.LeaseKeeper(store, "archive", ttl=60) as keeper:
            assert keeper.acquire("p0") is None and keeper.acquire("p1") is None
            worker.start()
            run_on_deployment(_pairs(2), params, deployment, 600.0, entries, keeper, poll=0.3)

    state = archive(return_state=True)
    worker.stop.set()
    assert state.is_failed() and entries == {}, (state, entries)
    for pair in ("p0", "p1"):
        lease = leases.current(store, pair)
        assert lease is not None and lease["holder"] == "archive", (pair, "lease released while its run went on")
