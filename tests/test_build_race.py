"""Built models (`tiny`, `tiny-svd`) when several processes build them at once (issue #15 item 3, 5f).

Every process used one fixed temporary folder: they wrote into each other's files, deleted the
folder under one another and renamed it away from each other.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BUILDER = """
import sys, time
from pathlib import Path
import diffusers, transformers  # imported before the start line, so the builds themselves overlap
from dreammover.backends.svd_tiny import ensure_tiny_svd
from dreammover.tiny import ensure_model
cache, ready, go = (Path(a) for a in sys.argv[1:])
ready.touch()
while not go.exists():
    time.sleep(0.005)
print(ensure_model(cache, "tiny"), ensure_tiny_svd(cache))
"""


@pytest.mark.faults
def test_four_processes_building_at_once_all_get_the_whole_model(tmp_path):
    from safetensors.torch import load_file

    from dreammover.backends.svd_tiny import TINY_SVD_VERSION
    from dreammover.tiny import TINY_VERSION, build_tiny_model

    cache, go = tmp_path / "models", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", BUILDER, str(cache), str(tmp_path / f"ready{i}"), str(go)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(4)]
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"ready{i}").exists() for i in range(4)):
            assert time.monotonic() < deadline, "builder processes did not start"
            assert all(p.poll() is None for p in procs), [p.communicate()[1].decode()[-2000:] for p in procs]
            time.sleep(0.05)
        go.touch()
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [err.decode()[-1500:] for code, _, err in results if code != 0]
    assert not failed, failed
    assert sorted(p.name for p in cache.iterdir()) == sorted([TINY_VERSION, TINY_SVD_VERSION])  # no temp left
    reference = build_tiny_model(tmp_path / "reference")
    name = "unet/diffusion_pytorch_model.safetensors"
    built, ref = load_file(cache / TINY_VERSION / name), load_file(reference / name)
    assert built.keys() == ref.keys() and all(torch.equal(built[k], ref[k]) for k in ref)
    assert (cache / TINY_SVD_VERSION / "TINY_VERSION").read_text() == TINY_SVD_VERSION
    assert (cache / TINY_SVD_VERSION / "unet" / "diffusion_pytorch_model.safetensors").is_file()
