"""Model identity by content (issue #15 item 4): same-shape models, models changed in place, hub revisions."""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch

from dreammover import InterpolationConfig, load_components
from dreammover.model_identity import MEMO_NAME, UNKNOWN_REVISION, ContentHashes, source_identity
from dreammover.tiny import build_tiny_model

UNET = "unet/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def twins(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny models with one config and one folder name, different seeds: every file has the same size."""
    root = tmp_path_factory.mktemp("twins")
    a, b = build_tiny_model(root / "x" / "model", seed=0), build_tiny_model(root / "y" / "model", seed=1)
    assert (a / UNET).stat().st_size == (b / UNET).stat().st_size and (a / UNET).read_bytes() != (b / UNET).read_bytes()
    return a, b


def _keys(identity: str) -> set[str]:
    from dreammover_tasks.artifacts import inversion_key, lora_key
    from dreammover_tasks.svd import svd_frames_key
    from dreammover.backends.svd_config import SVDKeyframeConfig

    config, pair, cache = InterpolationConfig(), "pairhash", "/cache"
    return {lora_key(pair, identity, config, cache), inversion_key(pair, identity, config, cache),
            svd_frames_key(pair, identity, SVDKeyframeConfig(), cache)}


def test_same_shape_models_with_different_weights_share_no_cache_key(twins, tmp_path):
    a, b = twins
    ia = load_components(str(a), device="cpu", dtype=torch.float32, cache_dir=tmp_path).identity
    ib = load_components(str(b), device="cpu", dtype=torch.float32, cache_dir=tmp_path).identity
    assert ia.startswith("dir:model@sha256:") and ia.endswith("|float32")
    assert ia != ib
    assert not _keys(ia) & _keys(ib)


def test_a_file_or_folder_changed_in_place_gets_a_new_identity(twins, tmp_path):
    a, b = twins
    model = shutil.copytree(a, tmp_path / "model")
    weights = tmp_path / "weights.safetensors"
    shutil.copyfile(a / UNET, weights)
    before = source_identity(str(model), tmp_path), source_identity(str(weights), tmp_path)
    assert before[1].startswith("file:weights.safetensors@sha256:")
    # Retrained in place: same names, same sizes, new bytes (written as a training script would).
    (model / UNET).write_bytes((b / UNET).read_bytes())
    weights.write_bytes((b / UNET).read_bytes())
    after = source_identity(str(model), tmp_path), source_identity(str(weights), tmp_path)
    assert after[0] != before[0] and after[1] != before[1]


def test_the_memo_spares_rereading_unchanged_files(twins, tmp_path):
    """Remembered by (path, size, mtime_ns): proven by changing bytes behind the memo's back.

    The content is swapped for another of the same size and the mtime put back: a hash that read the
    file would change, the memo's does not. A plain rewrite (new mtime) is read again.
    """
    a, b = twins
    f = tmp_path / "w.safetensors"
    shutil.copyfile(a / UNET, f)
    first = source_identity(str(f), tmp_path)
    memo = json.loads((tmp_path / MEMO_NAME).read_text())
    assert memo[str(f.resolve())]["size"] == f.stat().st_size
    st = f.stat()
    f.write_bytes((b / UNET).read_bytes())
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert source_identity(str(f), tmp_path) == first  # not read: the memo answered
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert source_identity(str(f), tmp_path) != first  # mtime moved: read again


def test_concurrent_memo_writers_never_corrupt_it(tmp_path):
    files = []
    for i in range(8):
        files.append(tmp_path / f"f{i}.json")
        files[-1].write_text(json.dumps({"i": i}))
    errors = []

    def hash_all(offset: int) -> None:
        try:
            for j in range(40):
                h = ContentHashes(tmp_path / MEMO_NAME)
                h.file(files[(offset + j) % len(files)])
                h.save()
        except Exception as err:  # collected: the assertion names them
            errors.append(repr(err))

    torn, stop = [], threading.Event()

    def read_memo() -> None:  # what another process loading the memo at that moment sees
        while not stop.is_set():
            try:
                json.loads((tmp_path / MEMO_NAME).read_bytes())
            except FileNotFoundError:
                pass
            except ValueError as err:
                torn.append(repr(err))

    reader = threading.Thread(target=read_memo)
    reader.start()
    threads = [threading.Thread(target=hash_all, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    reader.join()
    assert not errors, errors
    assert not torn, f"{len(torn)} reads saw a half-written memo: {torn[:3]}"
    memo = json.loads((tmp_path / MEMO_NAME).read_text())  # whole JSON, never a torn write
    assert set(memo) <= {str(f.resolve()) for f in files}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_hub_ids_carry_the_cached_commit_or_say_it_is_unknown(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--some-model"
    (repo / "snapshots" / commit / "unet").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert source_identity("someone/some-model", tmp_path, hub_cache=tmp_path / "hub") == \
        f"hub:someone/some-model@{commit}"
    assert source_identity("someone/other-model", tmp_path, hub_cache=tmp_path / "hub") == \
        f"hub:someone/other-model@{UNKNOWN_REVISION}"
