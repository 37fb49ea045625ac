"""Per-pair leases in the output storage, so overlapping archive runs never render one pair twice.

A lease is a small JSON object `<output>/_leases/<pair-id>.json` created with an atomic
create-if-absent (O_EXCL locally, a conditional PUT `If-None-Match: *` on S3/MinIO/R2). The run
that created it renders the pair and deletes it; another run that finds it skips the pair and
says who holds it.

Leases are short (TTL, 5 minutes) and kept alive by a heartbeat: while the run is alive its
LeaseKeeper rewrites the `expires` of every lease it holds every TTL/3 seconds. A run that dies
without releasing them (SIGKILL, a lost node) stops renewing, so its leases expire within TTL
and the next run takes them over, instead of the pair staying blocked for the whole pair timeout.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .storage import Storage, StorageError

PREFIX = "_leases"
# Seconds a lease lives without renewal: how long a crashed run can block its pairs. The keeper
# renews every TTL/3, so two renewals in a row may fail (a slow or throttled store) before it lapses.
TTL = 300.0
RENEW_THREADS = 16  # concurrent renewals per heartbeat

_log = logging.getLogger(__name__)


def _key(pair_id: str) -> str:
    return f"{PREFIX}/{pair_id}.json"


def acquire(store: Storage, pair_id: str, holder: str, ttl: float) -> Optional[dict]:
    """Take the pair's lease for `holder`; None on success, else the current holder's lease."""
    lease = {"holder": holder, "expires": time.time() + ttl}
    for _ in range(2):
        if store.create(_key(pair_id), json.dumps(lease).encode()):
            return None
        current = _read(store, pair_id)
        if current is not None and current.get("holder") == holder:
            return None
        if current is not None and current.get("expires", 0) > time.time():
            return current
        store.delete(_key(pair_id))  # expired (its run died) or unreadable: take it over
    return _read(store, pair_id) or {"holder": "unknown", "expires": 0}


def renew(store: Storage, pair_id: str, holder: str, ttl: float) -> bool:
    """Push the lease's expiry to now + ttl if `holder` still holds it; False if it was lost.

    Lost: gone, another holder's, or already expired (another run may be taking it over right
    now, so writing it back could overwrite theirs). The store has no compare-and-swap, so a
    takeover landing between this read and write could still be overwritten; renewing every
    TTL/3 keeps a live run's lease far from expiry, which makes that window practically unreachable.
    """
    current = _read(store, pair_id)
    if current is None or current.get("holder") != holder or current.get("expires", 0) <= time.time():
        return False
    store.write_bytes(_key(pair_id), json.dumps({**current, "expires": time.time() + ttl}).encode())
    return True


def release(store: Storage, pair_id: str, holder: str) -> None:
    """Give the lease back if we still hold it (never delete another run's lease)."""
    current = _read(store, pair_id)
    if current is not None and current.get("holder") == holder:
        store.delete(_key(pair_id))


class LeaseKeeper:
    """The leases one run holds: taken with `acquire`, renewed from a daemon thread, released on exit.

        with LeaseKeeper(store, run_id) as keeper:
            if keeper.acquire(pair_id) is None: ...   # ours; renewed every ttl/3 until the block ends

    The thread only lives inside the `with` block, so the leases outlive the run by at most `ttl`
    whatever way it ends. A lease found lost on renewal is logged and dropped from the set.
    """

    def __init__(self, store: Storage, holder: str, ttl: float = TTL, interval: Optional[float] = None,
                 log: logging.Logger | logging.LoggerAdapter | None = None):
        self.store, self.holder, self.ttl = store, holder, ttl
        self.interval = ttl / 3 if interval is None else interval
        self.log = log or _log
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def acquire(self, pair_id: str) -> Optional[dict]:
        """As `acquire` with this run's holder and ttl; a lease taken is renewed from then on."""
        other = acquire(self.store, pair_id, self.holder, self.ttl)
        if other is None:
            with self._lock:
                self.held.add(pair_id)
        return other

    def renew_all(self) -> None:
        """One heartbeat: renew every held lease; a store error is logged and retried next beat.

        Renewals run on a few threads: a run holds the leases of all its pairs from the start,
        and one by one, thousands of them on S3 (a read and a write each) would outlast the ttl.
        """
        with self._lock:
            pairs = sorted(self.held)
        if not pairs:
            return
        with ThreadPoolExecutor(max_workers=min(RENEW_THREADS, len(pairs)), thread_name_prefix="lease") as pool:
            for pair_id, kept in zip(pairs, pool.map(self._renew, pairs)):
                if kept is False:
                    self.log.warning("lease %s: lost (expired or taken over by another run); it may be rendered "
                                     "twice", pair_id)
                    with self._lock:
                        self.held.discard(pair_id)

    def _renew(self, pair_id: str) -> Optional[bool]:
        try:
            return renew(self.store, pair_id, self.holder, self.ttl)
        except StorageError as err:
            self.log.warning("lease %s: renewal failed (%s); retrying in %.0f s", pair_id, err, self.interval)
            return None

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.renew_all()
            except Exception as err:  # noqa: BLE001 - the heartbeat must survive anything one beat hits
                self.log.warning("lease heartbeat failed: %s", err)

    def __enter__(self) -> "LeaseKeeper":
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-keeper-{self.holder}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            pairs, self.held = sorted(self.held), set()
        for pair_id in pairs:
            try:
                release(self.store, pair_id, self.holder)
            except Exception as err:  # noqa: BLE001 - releasing must not hide the run's own outcome
                self.log.error("lease %s: release failed (%s); it expires within %.0f s", pair_id, err, self.ttl)


def _read(store: Storage, pair_id: str) -> Optional[dict]:
    try:
        return json.loads(store.read_bytes(_key(pair_id)))
    except (StorageError, ValueError):
        return None
