"""Incremental scheduled runs (issue #18): `run-archive SOURCE --discover` and the daily discover deployment.

    load the state of the last run from the OUTPUT (<output>/.dreammover/discover-state.json)
    -> dreammover.discover.discover(source, known=state): only photos new since then, and the bursts they extend
    -> their manifest entries, plus the entries a previous run did not finish ("pending"), are the archive's pairs
    -> (the archive renders them; clips already there are skipped by their fingerprints)
    -> the new state, written by compare-and-swap (DESIGN §9): created if there was none, else replaced only
       if it is still the version this run read.

A state that cannot be read (corrupt, or written by an incompatible version) is not fatal: the run warns
and discovers the whole source again, which costs time but no clip (rendered ones are skipped by their
fingerprints), and replaces the state at the end. A run that lost the compare-and-swap to another keeps the
other run's state and says so: the next run discovers this run's photos again, and skips what is rendered.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE

from dreammover_tasks.ingest import PairSpec, pairs_from_entries
from dreammover_tasks.retry import retry_options
from dreammover_tasks.storage import StorageError, open_storage, retry_transient

STATE_KEY = ".dreammover/discover-state.json"  # in the output: the state belongs to what was rendered there
MANIFEST_KEY = ".dreammover/discover-manifest.json"  # the last run's discovered pairs (+ .report.json beside it)
STATE_FORMAT = 1


@dataclass
class Discovered:
    """What a discover run found: the pairs to render now, and what saving the new state needs."""

    pairs: list[PairSpec]
    entries: dict[str, dict]  # pair id -> its manifest entry (discovered now, or pending from a previous run)
    state: Any  # dreammover.discover.DiscoverState after this run
    version: Optional[str]  # the state object's version as read (None: there was none)
    rescanned: Optional[str] = None  # why the whole source was discovered again (an unreadable state)
    counts: dict = field(default_factory=dict)


def load_state(out, log, source: Optional[str] = None) -> tuple[Any, list[dict], Optional[str], Optional[str]]:
    """(DiscoverState or None, pending entries, version read, why it was unreadable) from the output.

    source: the source's URI; a state recorded for another source is not used (its keys name other photos).
    """
    from dreammover.discover import DiscoverState

    got = retry_transient(out.get_versioned, STATE_KEY)
    if got is None:
        return None, [], None, None
    data, version = got
    try:
        doc = json.loads(data)
        if doc.get("format") != STATE_FORMAT:
            raise ValueError(f"format {doc.get('format')!r}, expected {STATE_FORMAT}")
        state = DiscoverState.model_validate(doc["discover"])
        pending = [e for e in doc.get("pending", []) if isinstance(e, dict) and e.get("id")]
        recorded = getattr(state, "source", "")
        if source and recorded and recorded != source:
            raise ValueError(f"it records another source, {recorded}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:  # pydantic's ValidationError is a ValueError
        why = f"{out.uri(STATE_KEY)} is unreadable ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        log.warning("%s: discovering the whole source again (rendered clips are skipped by their fingerprints); "
                    "the state is rewritten at the end of this run", why)
        return None, [], version, why
    return state, pending, version, None


@task(name="discover-photos", cache_policy=NO_CACHE, **retry_options())
def discover_new(source: str, output: str, config: Optional[dict] = None) -> Discovered:
    """The pairs of `source` new since the output's state (all of them without one), and the pending ones."""
    from prefect import get_run_logger

    from dreammover.discover import DiscoverConfig, discover, write_manifest

    log, out = get_run_logger(), open_storage(output)
    known, pending, version, why = load_state(out, log, open_storage(source).uri())
    result = discover(source, DiscoverConfig.model_validate(config or {}), known=known)
    # A pending entry whose photos are gone from the source would fail for ever: dropped.
    pending = [e for e in pending if all(k in result.state.seen for k in _photo_keys(e))]
    entries = {str(e["id"]): e for e in pending}
    entries.update({str(e["id"]): e for e in result.pairs})  # discovered now wins over a stale pending entry
    try:  # a record of what this run considered, and why candidates were rejected (never fatal)
        write_manifest(result, out.uri(MANIFEST_KEY))
    except (StorageError, OSError, ValueError) as err:
        log.warning("could not write %s: %s", out.uri(MANIFEST_KEY), err)
    pairs = pairs_from_entries(open_storage(source), list(entries.values()))
    counts = {"new_pairs": len(result.pairs), "pending": len(pending), "rejected": len(result.rejected),
              "photos_noted": len(result.photos_report)}
    log.info("discover %s: %d new pair(s), %d pending from earlier runs, %d candidate(s) rejected%s", source,
             counts["new_pairs"], counts["pending"], counts["rejected"], f" ({why})" if why else "")
    return Discovered(pairs=pairs, entries={p.id: entries[k] for p, k in zip(pairs, entries)}, state=result.state,
                      version=version, rescanned=why, counts=counts)


def _photo_keys(entry: dict) -> list[str]:
    return list(entry.get("keyframes") or [entry.get("image0", ""), entry.get("image1", "")])


def save_state(out, found: Discovered, report_entries: dict, log) -> bool:
    """Write the new state by compare-and-swap; the pairs not done or skipped stay pending for the next run."""
    pending = [found.entries[pid] for pid, e in report_entries.items()
               if pid in found.entries and e.get("status") not in ("done", "skipped")]
    data = json.dumps({"format": STATE_FORMAT, "discover": found.state.model_dump(mode="json"),
                       "pending": pending}, indent=1).encode() + b"\n"
    if found.version is None:
        ok = retry_transient(out.create, STATE_KEY, data)
    else:
        ok = retry_transient(out.replace_if, STATE_KEY, data, found.version)
    if not ok:
        log.warning("another run updated %s meanwhile: its state is kept; the next run discovers this run's "
                    "photos again and skips the clips already rendered", out.uri(STATE_KEY))
    return ok
