"""Ingest: find the pairs of an archive (layout or manifest) and fetch one pair's photos.

Layout: `<source>/<pair-id>/0.<ext>` and `<source>/<pair-id>/1.<ext>` (pair ids may be nested
paths, e.g. `2024/dog`; other files in a pair folder are ignored). Manifest: a JSON list (or
{"pairs": [...]}) / YAML list / CSV with columns id,image0,image1; relative image paths are
resolved against the source. A JSON/YAML entry may instead name a chained burst,
{"id", "keyframes": [...], "motions": [...]} (issue #18): one clip through all its keyframes.
"""
from __future__ import annotations

import collections
import csv
import io
import json
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Optional

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from .names import check_pair_id, normalize_name
from .retry import retry_options
from .storage import StorageError, is_remote, open_storage, read_uri, retry_transient, split_uri

# What the CLI accepts (dreammover.images loads GIFs as their first frame, and says so).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


class PairSpec(BaseModel):
    """One pair of an archive; `problem` says why it cannot run (it is reported, never raised).

    versions / sizes: the photos' versions (Storage.version: ETag, or size+mtime) and byte sizes as the
    source's listing gave them; None when not listed (a manifest), then they are read when needed.
    """

    id: str
    image0: str = ""
    image1: str = ""
    problem: Optional[str] = None
    versions: Optional[list[str]] = None
    sizes: Optional[list[int]] = None
    # A chained burst (dreammover/chain.py): all its photos, first = image0 and last = image1; None for a pair.
    keyframes: Optional[list[str]] = None
    motions: Optional[list[float]] = None  # per segment, from a discover manifest; None: measured when rendered

    def inputs(self) -> Optional[dict]:
        """The photos as photo_inputs (keyframe_inputs) gives them, from the listing (no request); None if not listed."""
        if self.versions is None:
            return None
        if self.keyframes:
            return {"keyframes": list(self.keyframes), "versions": list(self.versions), "motions": self.motions}
        return {"image0": self.image0, "image1": self.image1, "versions": list(self.versions)}

    def photos(self) -> list[str]:
        """Every photo of the clip in order: the keyframes of a chain, else both photos of the pair."""
        return list(self.keyframes) if self.keyframes else [self.image0, self.image1]


def discover_pairs(source: str, manifest: str | None = None) -> list[PairSpec]:
    """All pairs under `source`, sorted by id; malformed folders come back with a problem."""
    store = open_storage(source)
    if manifest:
        return _from_manifest(store, manifest)
    folders: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"0": [], "1": []})
    listed = store.list_info()  # one listing, versions and sizes included: the photos are never probed again
    for key in listed:
        p = PurePosixPath(key)
        if p.suffix.lower() in IMAGE_SUFFIXES and p.stem in ("0", "1"):
            folders[str(p.parent)][p.stem].append(key)
    pairs = []
    for folder, found in sorted(folders.items()):
        # Photos directly under the source: the source is itself one pair, named after its folder.
        # NFC: a folder typed on macOS arrives in NFD and must name the same pair as its NFC spelling.
        pair_id = normalize_name(folder if folder != "." else (PurePosixPath(store.uri()).name or "pair"))
        problem = check_pair_id(pair_id)
        for side in ("0", "1"):
            if not found[side]:
                problem = problem or f"no {side}.<image> in {store.uri(folder)}"
            elif len(found[side]) > 1:
                problem = problem or f"several {side}.* images: {', '.join(sorted(found[side]))}"
        uri = {s: store.uri(found[s][0]) if len(found[s]) == 1 else "" for s in ("0", "1")}
        info = None if problem else [listed[found[s][0]] for s in ("0", "1")]
        pairs.append(PairSpec(id=pair_id, image0=uri["0"], image1=uri["1"], problem=problem,
                              versions=[i.version for i in info] if info else None,
                              sizes=[i.size for i in info] if info else None))
    return _flag_duplicates(sorted(pairs, key=lambda p: p.id), "the source has it in two spellings (NFC and NFD)")


def _from_manifest(store, manifest: str) -> list[PairSpec]:
    text = read_uri(manifest).decode()
    suffix = PurePosixPath(manifest).suffix.lower()
    if suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif suffix in {".yaml", ".yml"}:
        import yaml
        rows = yaml.safe_load(text)
    else:
        rows = json.loads(text)
    if isinstance(rows, dict):
        rows = rows.get("pairs", [])
    if not isinstance(rows, list):
        raise ValueError(f"{manifest}: expected a list of {{id, image0, image1}} entries")
    return pairs_from_entries(store, rows)


def pairs_from_entries(store, rows: list[dict]) -> list[PairSpec]:
    """Manifest entries ({id, image0, image1} or {id, keyframes, motions}; paths relative to `store`) as PairSpecs."""

    def resolve(ref: str) -> str:
        ref = (ref or "").strip()
        if not ref or "://" in ref or Path(ref).is_absolute():
            return ref
        return store.uri(ref)

    pairs = []
    for i, row in enumerate(rows):
        pair_id = normalize_name(str(row.get("id") or f"pair-{i:04d}"))
        if row.get("keyframes") is not None:
            pairs.append(_chain_entry(i, pair_id, row, resolve))
            continue
        spec = PairSpec(id=pair_id, image0=resolve(row.get("image0", "")), image1=resolve(row.get("image1", "")))
        missing = [s for s in ("image0", "image1") if not getattr(spec, s)]
        spec.problem = check_pair_id(pair_id) or (f"manifest entry {i} lacks {', '.join(missing)}" if missing else None)
        pairs.append(spec)
    return _flag_duplicates(pairs, "it appears more than once in the manifest")


def _chain_entry(i: int, pair_id: str, row: dict, resolve) -> PairSpec:
    """A manifest's {"id", "keyframes": [...], "motions": [...]}: two keyframes are a plain pair, more a chain."""
    frames, motions = row.get("keyframes"), row.get("motions")
    refs = [resolve(str(k)) for k in frames] if isinstance(frames, list) else []
    problem = check_pair_id(pair_id)
    if not problem and (len(refs) < 2 or not all(refs)):
        problem = f"manifest entry {i}: keyframes must be a list of at least two photo paths"
    if not problem and motions is not None and (not isinstance(motions, list) or len(motions) != len(refs) - 1
                                                 or not all(isinstance(m, (int, float)) for m in motions)):
        problem = f"manifest entry {i}: motions must be {max(0, len(refs) - 1)} numbers, one per segment"
    chain = len(refs) > 2 and not problem
    return PairSpec(id=pair_id, image0=refs[0] if refs else "", image1=refs[-1] if refs else "", problem=problem,
                    keyframes=refs if chain else None,
                    motions=[float(m) for m in motions] if chain and motions is not None else None)


def _flag_duplicates(pairs: list[PairSpec], why: str) -> list[PairSpec]:
    """Pairs sharing one id would write one clip: each gets a problem instead (reported, never raised)."""
    seen = collections.Counter(p.id for p in pairs)
    for p in pairs:
        if seen[p.id] > 1:
            p.problem = p.problem or f"pair id {p.id!r} is not unique: {why}"
    return pairs


@task(name="list-pairs", cache_policy=NO_CACHE, **retry_options())
def list_pairs(source: str, manifest: Optional[str] = None) -> list[PairSpec]:
    """Walk an S3 prefix or local folder (or read a manifest) for pairs."""
    pairs = discover_pairs(source, manifest)
    get_run_logger().info("found %d pair(s) under %s", len(pairs), source)
    return pairs


def fetch_photos(image0: str, image1: str, workdir: str) -> tuple[str, str]:
    """Local paths of both photos: remote ones are downloaded into `workdir`, local ones used in place.

    Called inside the prepare tasks (their retries cover it): a task of its own was one more task run
    per pair for the orchestrator and its API.
    """
    out = []
    for side, uri in (("0", image0), ("1", image1)):
        if not is_remote(uri):
            out.append(str(Path(uri.removeprefix("file://"))))
            continue
        store, name = split_uri(uri)
        out.append(str(store.download(name, Path(workdir) / f"{side}{PurePosixPath(name).suffix}")))
    return out[0], out[1]


def photo_inputs(image0: str, image1: str, attempts: int = 6, known: Optional[dict] = None) -> dict:
    """The photos as a clip's fingerprint sees them: URIs plus a cheap content version (size+mtime / ETag).

    known: these inputs as the caller already has them (PairSpec.inputs(): the archive's listing), used
    as they are when they name these very photos, so nothing is read; otherwise the photos are probed.

    A missing photo has the version ''; a storage error is retried while transient (outside any task)
    and then RAISED: an empty version taken during an outage went into the fingerprint, which then
    never matched again, so every later run silently re-rendered the pair.
    """
    if known and known.get("image0") == image0 and known.get("image1") == image1 \
            and len(known.get("versions") or ()) == 2:
        return {"image0": image0, "image1": image1, "versions": list(known["versions"])}
    return {"image0": image0, "image1": image1, "versions": _versions([image0, image1], attempts)}


def keyframe_inputs(keyframes: list[str], motions: Optional[list[float]] = None, attempts: int = 6,
                    known: Optional[dict] = None) -> dict:
    """A chain's photos as its fingerprint sees them: every keyframe's URI and version (photo_inputs for K photos),
    and the motions that split its frames when given (they change the clip)."""
    if known and known.get("keyframes") == list(keyframes) and len(known.get("versions") or ()) == len(keyframes):
        versions = list(known["versions"])
    else:
        versions = _versions(list(keyframes), attempts)
    return {"keyframes": list(keyframes), "versions": versions, "motions": motions}


def spec_inputs(spec: PairSpec) -> dict:
    """The inputs of a pair or chain of the archive: from its listing when it has one, else read now."""
    if spec.keyframes:
        return keyframe_inputs(spec.keyframes, spec.motions, known=spec.inputs())
    return photo_inputs(spec.image0, spec.image1, known=spec.inputs())


def _versions(uris: list[str], attempts: int) -> list[str]:
    versions = []
    for uri in uris:
        store, name = split_uri(uri)
        try:
            versions.append(retry_transient(store.version, name, attempts=attempts))
        except OSError as err:  # a local stat that failed for another reason than "missing"
            raise StorageError(f"cannot read {uri}: {err.strerror or err}") from err
    return versions
