"""The archive's deployment path: every pair as a flow run of a pair deployment, waited on with a deadline per pair.

pair_timeout counts from when THAT pair's run starts (a worker picked it up), not from when the archive
submitted them all: with fewer workers than pairs, the last pairs start late, and one deadline for all
cancelled them as "timed out" before they had run at all. A run nobody picks up is bounded too: it fails
once no pair run of this archive has started or ended for pair_timeout (the pool made no progress).

An interrupted archive (cancelled, crashed) leaves the leases of the pair runs it did not cancel in
place and stops renewing them (LeaseKeeper.abandon): those runs may still render on their workers, and
a released lease let another archive render the same pairs again. They expire within the lease TTL.
"""
from __future__ import annotations

import time
from typing import Callable, Optional
from uuid import UUID

from prefect import get_run_logger
from prefect.states import Cancelling

POLL_SECONDS = 5.0
_BATCH = 200  # flow runs read per API call


def run_on_deployment(todo, params: dict, deployment: str, timeout: float, entries: dict, keeper,
                      poll: float = POLL_SECONDS, finished: Optional[Callable[[str], None]] = None) -> None:
    """Start every pair as a flow run of `deployment`, then wait for each within its own deadline.

    finished(pair_id) is called once a pair's entry is recorded (the archive releases its lease then).
    """
    from prefect.deployments import run_deployment

    params = {**params, "config": params["config"].model_dump(), "model": params["model"].model_dump()}
    started: dict[UUID, tuple] = {}
    try:
        for pair, clip in todo:
            run = run_deployment(deployment, timeout=0, as_subflow=True, parameters=dict(
                image0=pair.image0, image1=pair.image1, output=clip, pair_id=pair.id, inputs=pair.inputs(),
                keyframes=pair.keyframes, motions=pair.motions, **params))  # inputs: the photos' versions from the listing, so the pair run does not read them
            started[run.id] = (pair, clip)
        _wait_all(started, timeout, entries, poll, finished or (lambda pair_id: None))
    except BaseException:
        # Interrupted: the runs still going were not cancelled, so their leases must stay (expiring on their own).
        for pair, _ in started.values():
            if pair.id not in entries:
                keeper.abandon(pair.id)
        raise


def _wait_all(started: dict, timeout: float, entries: dict, poll: float, finished) -> None:
    """Poll the pair runs until each is final or past its deadline (then cancelled and failed)."""
    from prefect.client.orchestration import get_client

    progress = time.monotonic()  # last time any pair run started or ended
    seen_running: set[UUID] = set()
    with get_client(sync_client=True) as client:
        while waiting := [i for i, (pair, _) in started.items() if pair.id not in entries]:
            now = time.monotonic()
            for run in _read(client, waiting):
                pair, clip = started[run.id]
                state = run.state
                if state is not None and state.is_final():
                    entries[pair.id] = _entry(pair, clip, run)
                    progress = now
                elif run.start_time is not None:
                    if run.id not in seen_running:
                        seen_running.add(run.id)
                        progress = now
                    # Counted from the run's own start, as the API recorded it (not this archive's clock).
                    ran = time.time() - run.start_time.timestamp()
                    if ran > timeout:
                        entries[pair.id] = _cancel(client, pair, clip, run, f"timed out after {ran:.0f} s running "
                                                   f"(pair_timeout {timeout:g} s); cancelled")
                elif now - progress > timeout:
                    entries[pair.id] = _cancel(client, pair, clip, run, f"not started: no worker picked it up "
                                               f"while no pair run of this archive started or ended for "
                                               f"{timeout:g} s (pair_timeout); cancelled")
                if pair.id in entries:
                    finished(pair.id)
            if any(pair.id not in entries for pair, _ in started.values()):
                time.sleep(poll)


def _read(client, ids: list[UUID]) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = []
    for i in range(0, len(ids), _BATCH):
        batch = ids[i:i + _BATCH]
        runs += client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=batch)),
                                      limit=len(batch))
    return runs


def _entry(pair, clip: str, run) -> dict:
    ok = run.state.is_completed()
    entry = {"pair": pair.id, "status": "done" if ok else "failed", "output": clip, "flow_run_id": str(run.id)}
    if not ok:
        entry["reason"] = run.state.message or run.state.name
    return entry


def _cancel(client, pair, clip: str, run, reason: str) -> dict:
    client.set_flow_run_state(run.id, Cancelling(message="pair timed out"), force=True)
    get_run_logger().warning("pair %s: %s", pair.id, reason)
    return {"pair": pair.id, "status": "failed", "output": clip, "flow_run_id": str(run.id), "reason": reason}
