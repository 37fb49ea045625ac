"""Per-pair leases in the output storage, so overlapping archive runs never render one pair twice.

A lease is a small JSON object `<output>/_leases/<pair-id>.json` created with an atomic
create-if-absent (O_EXCL locally, a conditional PUT `If-None-Match: *` on S3/MinIO/R2). The run
that created it renders the pair and deletes it; another run that finds it skips the pair and
says who holds it. A lease outlives a crashed run only until it expires (the pair timeout plus
a margin); the next run then takes it over.
"""
from __future__ import annotations

import json
import time
from typing import Optional

from .storage import Storage, StorageError

PREFIX = "_leases"


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


def release(store: Storage, pair_id: str, holder: str) -> None:
    """Give the lease back if we still hold it (never delete another run's lease)."""
    current = _read(store, pair_id)
    if current is not None and current.get("holder") == holder:
        store.delete(_key(pair_id))


def _read(store: Storage, pair_id: str) -> Optional[dict]:
    try:
        return json.loads(store.read_bytes(_key(pair_id)))
    except (StorageError, ValueError):
        return None
