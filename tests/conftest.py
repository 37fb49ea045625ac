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
# Every skip for missing fixtures names this, so the run's summary can count them.
MISSING_SHARED = "../shared"


def pytest_report_header(config):
    found = "found" if PAIRS.is_dir() else "NOT FOUND: tests that need the fixture pairs will be skipped"
    return f"fixture pairs {PAIRS}: {found}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Name the tests skipped for lack of ../shared, so a green run without fixtures does not look complete."""
    missing = shared_skips(terminalreporter.stats.get("skipped", []))
    if missing:
        terminalreporter.write_line(
            f"{missing} tests skipped because {SHARED} (fixture pairs) is missing: put the project's shared "
            "folder (fixtures/pairs/<name>/0.png, 1.png) beside the checkout to run them (README: Tests)",
            yellow=True, bold=True)


def shared_skips(reports) -> int:
    """How many skip reports give missing ../shared as their reason."""
    def reason(rep) -> str:
        lr = rep.longrepr
        return lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)

    return sum(MISSING_SHARED in reason(r) for r in reports)


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


def fixture_pair(name: str) -> Path:
    """The folder of fixture pair `name` (0.png, 1.png), or skip the test naming ../shared as the reason."""
    d = PAIRS / name
    if not ((d / "0.png").exists() and (d / "1.png").exists()):
        pytest.skip(f"{MISSING_SHARED}/fixtures/pairs/{name} is not present")
    return d


@pytest.fixture(scope="session")
def dog_pair() -> tuple[Path, Path]:
    d = fixture_pair("dog")
    return d / "0.png", d / "1.png"


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """Test-local PREFECT_HOME / result storage and a temporary Prefect API, one per test module that asks."""
    home = tmp_path_factory.mktemp("prefect_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(home / "storage"))
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        mp.setenv("HF_HUB_OFFLINE", "1")
        from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings({PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}):
            with prefect_test_harness(server_startup_timeout=180):
                yield home
