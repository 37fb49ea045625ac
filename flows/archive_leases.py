"""The archive's side of the per-pair leases (tasks/leases.py): take them, wait for other runs' pairs, sweep.

- take: a storage error while leasing one pair fails that pair (with the reason), never the archive.
- wait_for_others: a pair leased by another live run is NOT done. This run waits (bounded: until that
  lease ends or the pair's deadline) and then looks again: the clip is there -> skipped, done by the
  other run; the lease is gone without a clip (its run died or failed) -> this run takes it and
  renders; still held at the deadline -> failed, "held by run X, not finished" (the run is Partial).
  Before, "being rendered by another run" counted as skipped/ok, also for a run that had died.
- sweep: expired leases (left by runs that died) are deleted after the run; errors are only logged.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from dreammover_tasks import leases
from dreammover_tasks.storage import StorageError, retry_transient

TAKE_THREADS = 16  # concurrent lease takes: one by one, thousands of pairs waited on each other's round trip


def take(todo, keeper, entries: dict, threads: int = TAKE_THREADS) -> tuple[list, list]:
    """(pairs leased by this run, (pair, clip, lease) held by other live runs), in `todo`'s order; leasing
    errors fail the pair. One conditional write per pair is unavoidable, so they go `threads` at a time."""
    def acquire(pair_id: str):
        try:
            return keeper.acquire(pair_id), None  # retried while the store fails transiently
        except StorageError as err:
            return None, err

    mine, others = [], []
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(todo))), thread_name_prefix="lease-take") as pool:
        taken = list(pool.map(acquire, [pair.id for pair, _ in todo]))
    for (pair, clip), (other, err) in zip(todo, taken):
        if err is not None:
            entries[pair.id] = {"pair": pair.id, "status": "failed", "output": clip,
                                "reason": f"cannot take the pair's lease: {type(err).__name__}: {err}"}
            continue
        if other is None:
            mine.append((pair, clip))
        else:
            others.append((pair, clip, other))
    return mine, others


def poll_seconds() -> float:
    """How often to look at other runs' leases: often enough next to the TTL, at most every 5 s."""
    return max(0.2, min(5.0, leases.TTL / 20))


def wait_for_others(waiting: list, keeper, entries: dict, is_current: Callable[[str, str], bool],
                    render: Callable[[list], None], timeout: float, log) -> None:
    """Resolve every pair another run holds (see module doc). is_current(pair_id, clip) says whether the
    clip there is the one these settings give; render(pairs) renders pairs this run has now leased."""
    store, deadline = keeper.store, time.monotonic() + timeout
    known = {pair.id: lease for pair, _, lease in waiting}  # last lease read; GET again once it may have expired
    pending = [(pair, clip) for pair, clip, _ in waiting]
    if pending:
        log.info("%d pair(s) held by other runs: waiting for them (at most %.0f s)", len(pending), timeout)
    while pending:
        taken, still = [], []
        try:
            present = set(retry_transient(store.list, leases.PREFIX))
        except StorageError as err:
            present = None  # unknown: read each lease below
            log.warning("cannot list leases (%s); reading them one by one", err)
        for pair, clip in pending:
            try:
                lease = _lease_now(store, pair.id, known.get(pair.id), present)
                if leases.is_live(lease) and lease.get("holder") != keeper.holder:
                    known[pair.id] = lease
                    if time.monotonic() < deadline:
                        still.append((pair, clip))
                    else:
                        entries[pair.id] = {"pair": pair.id, "status": "failed", "output": clip,
                                            "reason": f"held by run {lease.get('holder')}, not finished "
                                                      f"(waited {timeout:g} s, pair_timeout)"}
                    continue
                if is_current(pair.id, clip):
                    entries[pair.id] = {"pair": pair.id, "status": "skipped", "output": clip,
                                        "reason": f"done by another run ({(known.get(pair.id) or {}).get('holder')})"}
                    continue
                other = keeper.acquire(pair.id)
                if other is None:
                    taken.append((pair, clip))
                else:  # a third run was quicker: wait for that one
                    known[pair.id] = other
                    still.append((pair, clip))
            except StorageError as err:
                entries[pair.id] = {"pair": pair.id, "status": "failed", "output": clip,
                                    "reason": f"cannot check the pair's lease or clip: {type(err).__name__}: {err}"}
        if taken:
            log.info("%d pair(s) left unfinished by another run: rendering them here", len(taken))
            render(taken)
        pending = still
        if pending:
            time.sleep(poll_seconds())


def _lease_now(store, pair_id: str, last: dict | None, present: set | None) -> dict | None:
    """The pair's lease as it is now, reading it only when needed: gone from the listing -> None;
    listed and the last read still live -> that read (renewals only push its expiry later)."""
    if present is not None:
        if f"{leases.PREFIX}/{pair_id}.json" not in present:
            return None
        if leases.is_live(last):
            return last
    return retry_transient(leases.current, store, pair_id)


def sweep(store, log) -> None:
    """Delete expired leases (runs that died left them; finished pairs' leases stayed forever); errors only logged."""
    try:
        removed = leases.sweep_expired(store)
    except Exception as err:  # noqa: BLE001 - housekeeping must not change the run's outcome
        log.warning("sweeping expired leases failed: %s", err)
        return
    if removed:
        log.info("removed %d expired lease(s) of runs that died: %s", len(removed), ", ".join(removed[:10]))
