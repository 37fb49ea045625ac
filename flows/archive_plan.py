"""The archive's planning: which pairs to render, from ONE listing of the output (flows/archive.py calls it).

No request per pair one after the other: one listing of the output says which clips and summaries exist,
only the summaries beside an existing clip are read (PLAN_THREADS at a time), and the photos' versions
come from the source's listing (PairSpec.versions); a manifest's photos are read here, concurrently too.
The pairs to render carry their versions on, so the pair flow does not read them again.
"""
from __future__ import annotations

import concurrent.futures
import functools
import json
from typing import Optional

from dreammover.model_identity import weights_changed
from dreammover_tasks.ingest import PairSpec, spec_inputs
from dreammover_tasks.storage import StorageError, TransientStorageError, read_uri, retry_transient, uri_exists

from .pair import fingerprint, summary_uri

PLAN_THREADS = 16  # concurrent reads while planning (summaries, photos a manifest names)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _plan(pairs: list[PairSpec], out, entries: dict, clip: dict, force: bool,
          wanted: Optional[dict] = None) -> list[tuple[PairSpec, str]]:
    """Pairs to render; malformed ones and up-to-date ones go straight into `entries`; `wanted` gets
    each pair's clip fingerprint (to tell later whether another run published that very clip).

    No request per pair one after the other: ONE listing of the output says which clips and summaries
    exist, and only the summaries beside an existing clip are read, PLAN_THREADS at a time. The photos'
    versions come from the source's listing (PairSpec.versions); those a manifest names are read here,
    concurrently too, and the pairs to render carry them on, so the pair flow does not read them again.
    """
    todo, wanted = [], {} if wanted is None else wanted
    valid = []
    for pair in pairs:
        if pair.problem:  # checked first: a bad id must not reach out.uri()
            entries[pair.id] = {"pair": pair.id, "status": "failed", "reason": pair.problem}
        else:
            valid.append(pair)
    present: set[str] = set()
    if valid and not force:
        try:
            present = set(retry_transient(out.list))
        except StorageError as err:  # after its retries: fail the pairs with the reason, never re-render blind
            for pair in valid:
                entries[pair.id] = {"pair": pair.id, "status": "failed",
                                    "reason": f"cannot list the output: {_reason(err)}"}
            return []
    probe = functools.partial(_probe, out=out, clip=clip, present=present)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(PLAN_THREADS, len(valid))),
                                               thread_name_prefix="plan") as pool:
        for pair, uri, fp, current, err in pool.map(probe, valid):
            if err is not None:  # after its retries: fail this pair, not the run
                entries[pair.id] = {"pair": pair.id, "status": "failed", "reason": _reason(err)}
                continue
            wanted[pair.id] = fp
            if current:
                entries[pair.id] = {"pair": pair.id, "status": "skipped", "reason": "up to date", "output": uri}
            else:
                todo.append((pair, uri))
    return todo


def _probe(pair: PairSpec, out, clip: dict, present: set) -> tuple:
    """(pair with its photo versions, clip URI, fingerprint, whether the clip there is current, error)."""
    try:
        uri = out.uri(f"{pair.id}.{clip['fmt']}")
        if pair.versions is None:  # a manifest's photos: not listed, so read once here
            pair = pair.model_copy(update={"versions": spec_inputs(pair)["versions"]})  # a chain: all its keyframes
        fp = fingerprint(pair.image0, pair.image1, clip["model"], clip["config"], clip["fps"], clip["fmt"],
                         clip["backend"], inputs=pair.inputs(), preset=clip.get("preset"), restyle=clip.get("restyle"))
        current = False
        if f"{pair.id}.{clip['fmt']}" in present and f"{pair.id}.json" in present:
            previous = _read_summary(out, f"{pair.id}.json")
            current = (previous is not None and previous.get("fingerprint") == fp
                       and not weights_changed(previous.get("model"), clip.get("weights")))
        return pair, uri, fp, current, None
    except (StorageError, ValueError) as err:
        return pair, None, None, False, err


def _read_summary(out, key: str) -> Optional[dict]:
    """The summary at `key` of the output (its own client: no new one per read), as _summary reads it."""
    return _parse_summary(lambda: retry_transient(out.read_bytes, key))


def _summary(clip_uri: str) -> Optional[dict]:
    """The pair's summary, None if there is none (or it is not JSON); a storage error that outlasts its
    retries raises (TransientStorageError), so the pair fails with the reason instead of re-rendering."""
    return _parse_summary(lambda: retry_transient(read_uri, summary_uri(clip_uri)))


def _parse_summary(read) -> Optional[dict]:
    try:
        return json.loads(read())
    except TransientStorageError:
        raise
    except (StorageError, ValueError):  # missing: a permanent "cannot read" (no such key / file)
        return None


def _is_current(wanted: dict, pair_id: str, clip: str) -> bool:
    """Whether the clip at `clip` is there and is the one these settings give (its summary says so)."""
    summary = _summary(clip)
    return (summary is not None and summary.get("fingerprint") == wanted.get(pair_id)
            and retry_transient(uri_exists, clip))
