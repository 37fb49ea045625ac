"""A model source's identity by content, for cache keys (issue #15 item 4).

Files and folders are named by the sha256 of their content (two fine-tunes with identical shapes,
or a model retrained in place, never share a cache key); hub ids by the commit the local hub cache
resolves them to. Hashing a model once costs a read of its weights, so each file's hash is
remembered in `<DREAMMOVER_HOME>/content-hashes.json` by (absolute path, size, mtime_ns): an
unchanged file is not read again. The memo is only a cache: unreadable, it is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import write_bytes_atomic

MEMO_NAME = "content-hashes.json"
# What a diffusers folder is loaded from (configs, weights, tokenizer files); READMEs, images, .git are not.
MODEL_SUFFIXES = {".json", ".safetensors", ".txt", ".model"}
CHUNK = 8 * 1024 * 1024
UNKNOWN_REVISION = "unknown-revision"


class ContentHashes:
    """sha256 of files, remembered across runs by (absolute path, size, mtime_ns)."""

    def __init__(self, memo: str | Path):
        self.memo = Path(memo)
        self._known = self._load()
        self._new: dict[str, dict] = {}

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.memo.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):  # missing or damaged: a cache, so start over
            return {}

    def file(self, path: str | Path) -> str:
        """The file's sha256 (hex), read once per (path, size, mtime_ns)."""
        path = Path(path).resolve()
        before = path.stat()
        seen = self._new.get(str(path)) or self._known.get(str(path))
        if seen and seen.get("size") == before.st_size and seen.get("mtime_ns") == before.st_mtime_ns:
            return seen["sha256"]
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(CHUNK), b""):
                h.update(block)
        after = path.stat()
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):  # not written meanwhile
            self._new[str(path)] = {"size": after.st_size, "mtime_ns": after.st_mtime_ns, "sha256": h.hexdigest()}
        return h.hexdigest()

    def folder(self, folder: str | Path) -> str:
        """sha256 over the model files of a folder: their relative paths and contents (hidden paths skipped)."""
        folder = Path(folder)
        h = hashlib.sha256()
        for p in sorted(folder.rglob("*")):
            rel = p.relative_to(folder)
            if p.is_file() and p.suffix in MODEL_SUFFIXES and not any(s.startswith(".") for s in rel.parts):
                h.update(f"{rel.as_posix()}\0{self.file(p)}\n".encode())
        return h.hexdigest()

    def save(self) -> None:
        """Add this run's hashes to the memo, merged with what other processes wrote meanwhile.

        Written whole under a unique temporary name and renamed: concurrent writers never corrupt it
        (one may drop another's new entries, which then costs one more read, never a wrong hash).
        """
        if not self._new:
            return
        merged = {**self._load(), **self._new}
        try:
            write_bytes_atomic(self.memo, json.dumps(merged, sort_keys=True).encode())
        except OSError:  # a read-only home still loads models, it only hashes them again next time
            return
        self._known, self._new = merged, {}


def hub_revision(repo_id: str, hub_cache: str | Path | None = None) -> str | None:
    """The commit the local hub cache resolves `repo_id` to (its refs/main, as offline loading does), or None."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    root = Path(hub_cache or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model")
    try:
        commit = (root / "refs" / "main").read_text().strip()
    except OSError:
        return None
    return commit if commit and (root / "snapshots" / commit).is_dir() else None


def source_identity(source: str, home: str | Path, hub_cache: str | Path | None = None) -> str:
    """`file:<name>@sha256:<hex>`, `dir:<name>@sha256:<hex>` or `hub:<id>@<commit>` (`@unknown-revision`)."""
    path = Path(source)
    if path.is_file() or path.is_dir():
        hashes = ContentHashes(Path(home) / MEMO_NAME)
        kind, digest = ("file", hashes.file(path)) if path.is_file() else ("dir", hashes.folder(path))
        hashes.save()
        return f"{kind}:{path.name}@sha256:{digest[:32]}"
    return f"hub:{source}@{hub_revision(source, hub_cache) or UNKNOWN_REVISION}"



def visible_identity(source: str, home: str | Path, hub_cache: str | Path | None = None) -> str | None:
    """`source_identity` where this machine can tell it without loading the model, else None: a path that
    is not here, or a hub id not in the local cache (an orchestrator often has neither)."""
    path = Path(source)
    if path.is_file() or path.is_dir():
        return source_identity(source, home, hub_cache)
    if source.startswith((".", "/")) or source.endswith((".safetensors", ".ckpt")):
        return None
    revision = hub_revision(source, hub_cache)
    return f"hub:{source}@{revision}" if revision else None


def weights_changed(recorded: str | None, visible: str | None) -> bool:
    """Whether the weights a clip was made with (its summary's model identity, `<source>|...`) differ from
    the same source's weights now. False when either is unknown or they name different kinds of source
    (a summary written before identities were by content): those cannot be compared, so not re-rendered."""
    if not recorded or not visible:
        return False
    source = recorded.split("|", 1)[0]
    return source.startswith(visible.split("@", 1)[0] + "@") and source != visible
