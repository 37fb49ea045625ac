"""Benchmark: an archive of 8 pairs on a pool of 1 GPU worker, then of 2 (figures, not a test).

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python deploy/bench_pool.py [--size 128] [--workers 2]

Each run gets a fresh cache (so every pair fits its LoRA and inverts) and a fresh Dask pool of
worker processes with GPU=1 each (here on the CPU; on a GPU machine use one worker per GPU).
Prints the wall time of both runs, their ratio and the model loads. The 8 pairs are the 3
fixture pairs and mirrored/flipped variants of them (distinct content, so no cache sharing).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pairs"


def make_pairs(root: Path, count: int) -> None:
    variants = [("", lambda a: a), ("-mirror", lambda a: a[:, ::-1]), ("-flip", lambda a: a[::-1])]
    made = 0
    for suffix, fn in variants:
        for src in sorted(p for p in FIXTURES.iterdir() if p.is_dir()):
            if made == count:
                return
            out = root / f"{src.name}{suffix}"
            out.mkdir(parents=True)
            for side in ("0", "1"):
                image = next(src.glob(f"{side}.*"))
                Image.fromarray(np.ascontiguousarray(fn(np.asarray(Image.open(image).convert("RGB"))))).save(
                    out / f"{side}.png")
            made += 1


def run(pairs: Path, work: Path, workers: int, model: str, config: dict) -> tuple[float, dict]:
    from dreammover import InterpolationConfig
    from flows.archive import interpolate_archive
    from tasks.models import ModelSpec

    start = time.perf_counter()
    state = interpolate_archive(str(pairs), str(work / f"clips-{workers}"), config=InterpolationConfig(**config),
                                model=ModelSpec(model=model, device="cpu", dtype="fp32"),
                                cache=str(work / f"cache-{workers}"), dask=f"processes:{workers}", return_state=True)
    seconds = time.perf_counter() - start
    report = state.result(raise_on_failure=False)
    report = getattr(report, "report", report)
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--lora-steps", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from dreammover.tiny import ensure_tiny_model
    from flows.local_api import temporary_api

    work = Path(tempfile.mkdtemp(prefix="dreammover-bench-pool-"))
    try:
        os.environ["DREAMMOVER_HOME"] = str(work / "home")
        model = str(ensure_tiny_model(work / "models"))
        make_pairs(work / "pairs", args.pairs)
        config = dict(size=args.size, num_frames=args.frames, frames_per_batch=2, lora_steps=args.lora_steps,
                      lora_rank=4, num_inference_steps=20, inversion_steps=12, feature_step=6)
        with temporary_api():
            figures = {}
            for workers in (1, args.workers):
                seconds, report = run(work / "pairs", work, workers, model, config)
                loads = sum(report["pool"]["model_loads"].values())
                figures[workers] = seconds
                print(f"pool: workers={workers} pairs done={report['done']} failed={report['failed']} "
                      f"model_loads={loads} workers_used={len(report['pool']['workers'])} seconds={seconds:.1f}")
        print(f"pool: ratio {args.workers}-worker / 1-worker wall time = {figures[args.workers] / figures[1]:.2f} "
              f"(target <= 0.65; {os.cpu_count()} CPU cores on this machine)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
