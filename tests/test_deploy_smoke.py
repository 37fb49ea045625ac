"""The deployed stack end to end: deploy/smoke.sh (real Prefect server, pools, deployments, CPU worker,
two Dask GPU-pool workers, the cron deployment's scheduler, the daily archive over 3 pairs).

Here so that drift in fastapi / SQLAlchemy / Prefect / Dask breaks CI rather than users. It takes a
few minutes of wall time; the script stops every process it started.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT.parent / "shared" / "fixtures" / "pairs"


def test_smoke_script_runs_the_daily_deployment_on_two_pool_workers():
    if len([p for p in PAIRS.iterdir() if p.is_dir()] if PAIRS.is_dir() else []) < 3:
        pytest.skip("../shared/fixtures/pairs with 3 pairs is not present")
    for exe in ("prefect", "dask", "bash"):
        if shutil.which(exe) is None:
            pytest.skip(f"{exe} not on PATH")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(["bash", str(ROOT / "deploy" / "smoke.sh")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    line = re.search(r"smoke: pairs done=(\d+) failed=(\d+) model_loads=(\d+) workers_used=(\d+) seconds=(\d+)",
                     done.stdout)
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    d, f, loads, workers, _ = map(int, line.groups())
    assert (d, f, workers) == (3, 0, 2) and loads <= 2
