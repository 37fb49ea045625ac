"""The library installs and runs without the apps' dependencies (#19): `pip install dreammover` gives the method
and `dreammover interpolate`; Prefect/Dask/S3 come with the `pipeline` extra and the web server with `studio`,
and their commands say what to install instead of failing with an ImportError."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_DEPS = {"prefect", "prefect-dask", "distributed", "boto3", "sqlalchemy", "fastapi", "uvicorn", "python-multipart"}
# What a machine without the extras lacks: an import of any of these fails as if it were not installed.
BLOCKED = ["prefect", "prefect_dask", "distributed", "dask", "boto3", "botocore", "fastapi", "starlette", "uvicorn",
           "multipart", "sqlalchemy", "moto"]


def _name(requirement: str) -> str:
    return requirement.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()


def test_the_library_requires_none_of_the_apps_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert not core & APP_DEPS, core & APP_DEPS
    extras = project["optional-dependencies"]
    assert {_name(r) for r in extras["pipeline"]} >= {"prefect", "boto3", "distributed", "prefect-dask"}
    assert {_name(r) for r in extras["studio"]} >= {"fastapi", "uvicorn", "python-multipart"}
    assert "dreammover[pipeline,studio]" in extras["test"]  # the README's test command gets everything


def _without_apps(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    script = (f"import sys\nfor m in {BLOCKED!r}:\n    sys.modules[m] = None\n"
              "from dreammover.cli import main\n"
              f"sys.argv = ['dreammover', *{list(argv)!r}]\nmain()\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)


def test_interpolate_runs_without_the_apps_and_their_commands_say_what_to_install(tiny_model_dir, tmp_path):
    from dreammover.sample import write_sample_pair

    a, b = write_sample_pair(tmp_path / "pair", 64)
    done = _without_apps(tmp_path, "interpolate", str(a), str(b), "-o", str(tmp_path / "clip.mp4"), "--model", "tiny",
                         "--frames", "2", "--size", "64", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "clip.mp4").stat().st_size > 0
    archive = _without_apps(tmp_path, "run-archive", str(tmp_path / "pair"), "-o", str(tmp_path / "out"))
    assert archive.returncode == 2 and "dreammover[pipeline]" in archive.stderr, archive.stderr[-2000:]
    studio = _without_apps(tmp_path, "studio", "--model", "tiny")
    assert studio.returncode == 2 and "dreammover[studio]" in studio.stderr, studio.stderr[-2000:]
