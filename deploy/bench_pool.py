"""Benchmark: an archive of 8 pairs on a pool of 1 GPU worker, then of 2 (figures, not a test).

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python deploy/bench_pool.py [--size 128] [--workers 2]
        [--quick] [--cold-pool]

The pool is started before the clock, as in production: long-lived workers with GPU=1 each and
the model preloaded (deploy/compose.yaml starts one `dask worker --preload tasks.gpu_worker` per
GPU), here as worker processes on the CPU. --cold-pool instead lets each archive run start its own
pool (`--dask processes:N`), so the workers' start and model load are on the clock.

Clip settings are the defaults (the paper's: LoRA rank 16 / 80 steps, 30 inverted and 50 DDIM
steps, 32 frames, frames_per_batch "auto") at --size; --quick is a few-seconds-per-pair variant.
Each run gets a fresh cache, so every pair fits its LoRA and inverts. The 8 pairs are the 3
fixture pairs and mirrored/flipped variants of them (distinct content, so no cache sharing).

Besides wall time, ratio and model loads, it prints the CPU seconds of the orchestration (this
process and its Prefect API server) and of the pool's workers. On a GPU machine the orchestration
runs on CPU cores of its own; on a small CPU-only machine it shares the cores with the "GPU"
workers, and its CPU time is what keeps the 2-worker run from halving the 1-worker one.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pairs"
QUICK = dict(num_frames=8, lora_steps=20, lora_rank=4, num_inference_steps=20, inversion_steps=12, feature_step=6)


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


def _cpu_seconds(pid: int | None = None) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _orchestration_cpu() -> float:
    """CPU seconds of this process and its Prefect API server child (uvicorn), so far."""
    import psutil

    total = _cpu_seconds()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in " ".join(child.cmdline()):
                total += _cpu_seconds(child.pid)
    return total


def _workers_cpu(address: str | None) -> float:
    if address is None:
        return float("nan")
    from distributed import Client

    with Client(address, timeout=30) as client:
        return sum(client.run(_cpu_seconds).values())


@contextlib.contextmanager
def _pool(workers: int, model: str, cold: bool):
    """The dask argument of the archive run: a running pool's address, or 'processes:N' (started by the run)."""
    if cold:
        yield f"processes:{workers}", None
        return
    from distributed import LocalCluster

    from flows.runners import GPU, WORKER_PRELOAD

    os.environ["DREAMMOVER_PRELOAD_MODEL"] = model  # read by the workers' preload (tasks/gpu_worker.py)
    try:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, resources=GPU,
                          dashboard_address=None, preload=[WORKER_PRELOAD]) as cluster:
            yield cluster.scheduler_address, cluster.scheduler_address
    finally:
        os.environ.pop("DREAMMOVER_PRELOAD_MODEL", None)


def run(pairs: Path, work: Path, workers: int, model: str, config: dict, cold: bool) -> dict:
    from dreammover import InterpolationConfig
    from flows.archive import interpolate_archive
    from tasks.models import ModelSpec

    with _pool(workers, model, cold) as (dask, address):
        cpu0, wcpu0, start = _orchestration_cpu(), _workers_cpu(address), time.perf_counter()
        state = interpolate_archive(str(pairs), str(work / f"clips-{workers}"), config=InterpolationConfig(**config),
                                    model=ModelSpec(model=model), cache=str(work / f"cache-{workers}"), dask=dask,
                                    return_state=True)
        seconds = time.perf_counter() - start
        cpu, wcpu = _orchestration_cpu() - cpu0, _workers_cpu(address) - wcpu0
    report = state.result(raise_on_failure=False)
    report = getattr(report, "report", report)
    return {"seconds": seconds, "report": report, "orchestration_cpu": cpu, "workers_cpu": wcpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a few-seconds-per-pair workload: " + str(QUICK))
    parser.add_argument("--cold-pool", action="store_true", help="each run starts its pool (load on the clock)")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from dreammover.tiny import ensure_tiny_model
    from flows.local_api import temporary_api

    work = Path(tempfile.mkdtemp(prefix="dreammover-bench-pool-"))
    try:
        os.environ["DREAMMOVER_HOME"] = str(work / "home")
        model = str(ensure_tiny_model(work / "models"))
        make_pairs(work / "pairs", args.pairs)
        config = dict(size=args.size, **(QUICK if args.quick else {}))
        print(f"pool: {args.pairs} pairs, clip settings {config} (the rest: defaults), "
              f"{'pool started by each run' if args.cold_pool else 'pool started before the clock, model preloaded'}")
        with temporary_api():
            figures = {}
            for workers in (1, args.workers):
                r = run(work / "pairs", work, workers, model, config, args.cold_pool)
                report, figures[workers] = r["report"], r["seconds"]
                loads = sum(report["pool"]["model_loads"].values())
                print(f"pool: workers={workers} pairs done={report['done']} failed={report['failed']} "
                      f"model_loads={loads} workers_used={len(report['pool']['workers'])} "
                      f"seconds={r['seconds']:.1f} cpu_s: orchestration={r['orchestration_cpu']:.1f} "
                      f"workers={'n/a (pool started by the run)' if args.cold_pool else round(r['workers_cpu'], 1)}",
                      flush=True)
                for e in report["pairs"]:
                    if e["status"] == "failed":
                        print(f"pool:   failed {e['pair']}: {e.get('reason')}", flush=True)
        print(f"pool: ratio {args.workers}-worker / 1-worker wall time = {figures[args.workers] / figures[1]:.2f} "
              f"(target <= 0.65; {os.cpu_count()} CPU cores on this machine)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
