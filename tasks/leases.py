"""Per-pair leases in the output storage, so overlapping archive runs never render one pair twice.

A lease is a small JSON object `<output>/_leases/<pair-id>.json`: {"holder": run id, "expires": epoch s}.
Every change is a compare-and-swap on the storage (tasks/storage.py): created only if absent
(O_EXCL link locally, `If-None-Match: *` on S3), and taken over, renewed and released only at the
version that was read (a per-key flock locally, `If-Match: <ETag>` on S3). Of several runs racing
for an expired lease exactly one wins; a renewal never overwrites a takeover; a release never
deletes another run's lease.

Leases are short (TTL) and kept alive by a heartbeat: the run's LeaseKeeper renews every lease it
holds every TTL/3 s. A run that dies stops renewing, so its leases expire within TTL and the next
run takes them over. A storage error is never read as "no lease": every function here raises it
(TransientStorageError when it may pass), and the keeper keeps a lease whose renewal failed and
tries again on the next beat; only a lease that is gone or another run's is dropped.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .storage import Storage, StorageError, retry_transient

PREFIX = "_leases"
# Seconds a lease lives without renewal: how long a crashed run can block its pairs. The keeper
# renews every TTL/3, so two renewals in a row may fail (a slow or throttled store) before it lapses.
TTL = 300.0
RENEW_THREADS = 16  # concurrent renewals per heartbeat
# Backoff for lease operations (they run outside any Prefect task, so they carry their own retries).
RETRY = dict(attempts=5, base_delay=0.5, max_delay=8.0)
_CAS_ROUNDS = 8  # read-then-swap rounds before giving up on a key that keeps changing under us

_log = logging.getLogger(__name__)


def _key(pair_id: str) -> str:
    return f"{PREFIX}/{pair_id}.json"


def _encode(holder: str, ttl: float) -> bytes:
    return json.dumps({"holder": holder, "expires": time.time() + ttl}).encode()


def _decode(data: bytes) -> dict:
    """A lease's content; an unreadable one counts as expired (it can only be taken over, by CAS)."""
    try:
        lease = json.loads(data)
        return lease if isinstance(lease, dict) else {"holder": None, "expires": 0}
    except ValueError:
        return {"holder": None, "expires": 0}


def is_live(lease: Optional[dict], now: Optional[float] = None) -> bool:
    """Whether a lease still protects its pair (not yet expired)."""
    return lease is not None and float(lease.get("expires", 0)) > (time.time() if now is None else now)


def current(store: Storage, pair_id: str) -> Optional[dict]:
    """The pair's lease, or None if there is none; storage errors raise."""
    got = store.get_versioned(_key(pair_id))
    return None if got is None else _decode(got[0])


def acquire(store: Storage, pair_id: str, holder: str, ttl: float) -> Optional[dict]:
    """Take the pair's lease for `holder`: None when we hold it now, else the live holder's lease."""
    key = _key(pair_id)
    for _ in range(_CAS_ROUNDS):
        if store.create(key, _encode(holder, ttl)):
            return None
        got = store.get_versioned(key)
        if got is None:
            continue  # released between our create and read: create again
        lease, version = _decode(got[0]), got[1]
        if is_live(lease) and lease.get("holder") != holder:
            return lease
        # Ours already, or expired (its run died): swap it at the version we read. Of racing
        # takers, only the first swap matches; the others re-read and find its live lease.
        if store.replace_if(key, _encode(holder, ttl), version):
            return None
    raise StorageError(f"lease {store.uri(key)} kept changing under {_CAS_ROUNDS} attempts to take it")


def renew(store: Storage, pair_id: str, holder: str, ttl: float) -> bool:
    """Push the lease's expiry to now + ttl while `holder` holds it; False if it is gone or another's."""
    key = _key(pair_id)
    for _ in range(_CAS_ROUNDS):
        got = store.get_versioned(key)
        if got is None or _decode(got[0]).get("holder") != holder:
            return False
        if store.replace_if(key, _encode(holder, ttl), got[1]):
            return True
    return False


def release(store: Storage, pair_id: str, holder: str) -> bool:
    """Delete the lease if `holder` still holds it (never another run's); True if it was deleted."""
    key = _key(pair_id)
    for _ in range(_CAS_ROUNDS):
        got = store.get_versioned(key)
        if got is None or _decode(got[0]).get("holder") != holder:
            return False
        if store.delete_if(key, got[1]):
            return True
    return False


def sweep_expired(store: Storage, grace: float = 0.0) -> list[str]:
    """Delete leases expired for more than `grace` s (left by runs that died); the pair ids removed."""
    removed = []
    for key in store.list(PREFIX):
        if not key.endswith(".json"):
            continue
        got = store.get_versioned(key)
        if got is None or is_live(_decode(got[0]), time.time() - grace):
            continue
        if store.delete_if(key, got[1]):
            removed.append(key[len(PREFIX) + 1:-len(".json")])
    return removed


class LeaseKeeper:
    """The leases one run holds: taken with `acquire`, renewed from a daemon thread, released on exit.

        with LeaseKeeper(store, run_id) as keeper:
            if keeper.acquire(pair_id) is None: ...   # ours; renewed every ttl/3 until released

    The thread only lives inside the `with` block, so the leases outlive the run by at most `ttl`
    whatever way it ends. `abandon` stops renewing a lease without deleting it, for a pair whose
    work may still be running elsewhere (a deployment run this run did not cancel).
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
        """As `acquire` with this run's holder and ttl (retried while the store fails transiently)."""
        other = retry_transient(acquire, self.store, pair_id, self.holder, self.ttl, **RETRY)
        if other is None:
            with self._lock:
                self.held.add(pair_id)
        return other

    def release(self, pair_id: str) -> None:
        """Release one lease now (the pair is finished); an error is logged, the lease then expires."""
        with self._lock:
            self.held.discard(pair_id)
        try:
            retry_transient(release, self.store, pair_id, self.holder, **RETRY)
        except StorageError as err:
            self.log.error("lease %s: release failed (%s); it expires within %.0f s", pair_id, err, self.ttl)

    def abandon(self, pair_id: str) -> None:
        """Stop renewing a lease but leave it in place: it expires within ttl unless its pair ends first."""
        with self._lock:
            self.held.discard(pair_id)

    def renew_all(self) -> None:
        """One heartbeat: renew every held lease on a few threads (thousands, one by one, would outlast ttl)."""
        with self._lock:
            pairs = sorted(self.held)
        if not pairs:
            return
        with ThreadPoolExecutor(max_workers=min(RENEW_THREADS, len(pairs)), thread_name_prefix="lease") as pool:
            for pair_id, kept in zip(pairs, pool.map(self._renew, pairs)):
                with self._lock:
                    held = pair_id in self.held  # released meanwhile (its pair ended): not lost
                if kept is False and held:
                    self.log.warning("lease %s: lost (gone, or taken over by another run after it expired); "
                                     "it may be rendered twice", pair_id)
                    with self._lock:
                        self.held.discard(pair_id)

    def _renew(self, pair_id: str) -> Optional[bool]:
        try:
            return retry_transient(renew, self.store, pair_id, self.holder, self.ttl,
                                   attempts=3, base_delay=0.5, max_delay=2.0)
        except StorageError as err:
            self.log.warning("lease %s: renewal failed (%s); kept, retrying in %.0f s", pair_id, err, self.interval)
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
            pairs = sorted(self.held)
        for pair_id in pairs:
            self.release(pair_id)
