"""Shared fixtures: offline hub, a tiny SD1.5-shaped model built once per session, fixture pairs."""
from __future__ import annotations

import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from intra-op threads, and on a shared 2-core box OpenMP spin-waiting
# under oversubscription made a 4 s run take minutes. Subprocesses (CLI, servers) inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PAIRS = SHARED / "fixtures" / "pairs"


@pytest.fixture(scope="session")
def dreammover_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("dreammover_home")
    os.environ["DREAMMOVER_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(dreammover_home) -> Path:
    from dreammover.tiny import ensure_tiny_model

    return ensure_tiny_model(dreammover_home / "models")


@pytest.fixture(scope="session")
def tiny_dm(tiny_model_dir):
    """A DreamMover on the tiny model, loaded through the real folder-loading path (CPU fp32)."""
    from dreammover import DreamMover

    return DreamMover.from_pretrained(str(tiny_model_dir), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def dog_pair() -> tuple[Path, Path]:
    d = PAIRS / "dog"
    if not (d / "0.png").exists():
        pytest.skip("../shared/fixtures/pairs/dog is not present")
    return d / "0.png", d / "1.png"
