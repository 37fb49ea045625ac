"""Benchmark: an archive of 8 pairs on a pool of 1 GPU worker, then of 2; or, with --null-model, the orchestration alone.

    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python deploy/bench_pool.py [--size 128] [--workers 2]
        [--quick] [--cold-pool] [--db sqlite|postgres]
    PYTHONPATH=. HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python deploy/bench_pool.py --null-model [--pairs 32]
        [--workers 2] [--db sqlite|postgres]

The pool is started before the clock, as in production: long-lived workers with GPU=1 each and
the model preloaded (deploy/compose.yaml starts one `dask worker --preload dreammover_tasks.gpu_worker` per
GPU), here as worker processes on the CPU. --cold-pool instead lets each archive run start its own
pool (`--dask processes:N`), so the workers' start and model load are on the clock.

Clip settings are the defaults (the paper's: LoRA rank 16 / 80 steps, 30 inverted and 50 DDIM
steps, 32 frames, frames_per_batch "auto") at --size; --quick is a few-seconds-per-pair variant.
Each run gets a fresh cache, so every pair fits its LoRA and inverts. The pairs are the fixture
pairs and flipped/channel-swapped variants of them (distinct content, so no cache sharing).

Besides wall time, ratio and model loads, it prints the CPU seconds of the orchestration (this
process with the subprocesses it ran, e.g. ffmpeg, plus its Prefect API server and database) and
of the pool's workers. On a GPU machine the orchestration runs on CPU cores of its own; on a
small CPU-only machine it shares the cores with the "GPU" workers, and its CPU time is what keeps
the 2-worker run from halving the 1-worker one.

--null-model (issue #19, "Orchestrator cost"): the workers' model is deploy/null_model.py's (every
model step returns zeros of the right shape at once, installed by deploy/null_preload.py), so ONE
archive run times only the orchestration: Prefect flow and task runs, storage I/O, planning,
leases, encode and upload. It prints orchestration CPU s per pair and pairs per minute (goal:
<= 0.4 CPU s per pair, >= 150 pairs a minute). --db postgres runs against `prefect server start`
on a throwaway PostgreSQL (deploy/bench_db.py) instead of the embedded SQLite API.
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


def _variants() -> list[tuple[str, object]]:
    """Distinct-content variants of a photo: the 4 flips x the 6 channel orders (24 per fixture pair)."""
    flips = [("", lambda a: a), ("-mirror", lambda a: a[:, ::-1]), ("-flip", lambda a: a[::-1]),
             ("-rot180", lambda a: a[::-1, ::-1])]
    orders = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)]
    return [(f"{name}{'' if o == (0, 1, 2) else '-' + ''.join(map(str, o))}",
             lambda a, fn=fn, o=o: fn(a)[..., list(o)]) for o in orders for name, fn in flips]


def make_pairs(root: Path, count: int) -> None:
    sources = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
    if count > len(sources) * len(_variants()):
        raise SystemExit(f"at most {len(sources) * len(_variants())} distinct pairs from {FIXTURES}")
    made = 0
    for suffix, fn in _variants():
        for src in sources:
            if made == count:
                return
            out = root / f"{src.name}{suffix}"
            out.mkdir(parents=True)
            for side in ("0", "1"):
                image = next(src.glob(f"{side}.*"))
                Image.fromarray(np.ascontiguousarray(fn(np.asarray(Image.open(image).convert("RGB"))))).save(
                    out / f"{side}.png")
            made += 1


GOAL_CPU_PER_PAIR = 0.4  # issue #19: orchestration CPU s per pair, i.e. >= 150 pairs a minute on one core


def _self_cpu(children: bool) -> float:
    """CPU seconds of this process (the flows, the planning, Dask's scheduler) and, with children, of the
    subprocesses it ran and reaped (ffmpeg); a cold pool's workers are reaped children too, hence the flag."""
    import psutil

    t = psutil.Process().cpu_times()
    return t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)


def _cpu_seconds() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system


def _workers_cpu(address: str | None) -> float:
    if address is None:
        return float("nan")
    from distributed import Client

    with Client(address, timeout=30) as client:
        return sum(client.run(_cpu_seconds).values())


@contextlib.contextmanager
def _pool(workers: int, model: str, cold: bool, preload: str):
    """The dask argument of the archive run: a running pool's address, or 'processes:N' (started by the run)."""
    if cold:
        yield f"processes:{workers}", None
        return
    from distributed import LocalCluster

    from dreammover_flows.runners import GPU

    os.environ["DREAMMOVER_PRELOAD_MODEL"] = model  # read by the workers' preload (tasks/gpu_worker.py)
    try:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, resources=GPU,
                          dashboard_address=None, preload=[preload]) as cluster:
            yield cluster.scheduler_address, cluster.scheduler_address
    finally:
        os.environ.pop("DREAMMOVER_PRELOAD_MODEL", None)


def run(pairs: Path, work: Path, workers: int, model: str, config: dict, cold: bool, meter,
        preload: str) -> dict:
    from dreammover import InterpolationConfig
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.models import ModelSpec

    def orchestration() -> dict:
        return {"self": _self_cpu(children=not cold), "server": meter.server(), "database": meter.database()}

    with _pool(workers, model, cold, preload) as (dask, address):
        cpu0, wcpu0, start = orchestration(), _workers_cpu(address), time.perf_counter()
        state = interpolate_archive(str(pairs), str(work / f"clips-{workers}"), config=InterpolationConfig(**config),
                                    model=ModelSpec(model=model), cache=str(work / f"cache-{workers}"), dask=dask,
                                    return_state=True)
        seconds = time.perf_counter() - start
        cpu1, wcpu = orchestration(), _workers_cpu(address) - wcpu0
    report = state.result(raise_on_failure=False)
    report = getattr(report, "report", report)
    parts = {k: cpu1[k] - cpu0[k] for k in cpu0}
    return {"seconds": seconds, "report": report, "orchestration_cpu": sum(parts.values()),
            "orchestration_parts": parts, "workers_cpu": wcpu}


def _print_failures(report: dict) -> None:
    for e in report["pairs"]:
        if e["status"] == "failed":
            print(f"pool:   failed {e['pair']}: {e.get('reason')}", flush=True)


def _print_null(r: dict, workers: int, db: str, stalls: dict) -> None:
    """The orchestration figures of one null-model archive run."""
    report, n = r["report"], max(1, len(r["report"]["pairs"]))
    per_pair, parts = r["orchestration_cpu"] / n, r["orchestration_parts"]
    print(f"null: db={db} workers={workers} pairs={n} done={report['done']} failed={report['failed']} "
          f"clips={r['clips']} wall_s={r['seconds']:.1f} pairs_per_min={60 * n / r['seconds']:.1f}", flush=True)
    print(f"null: orchestration cpu_s={r['orchestration_cpu']:.1f} per_pair={per_pair:.3f} "
          f"(this process {parts['self'] / n:.3f}, API server {parts['server'] / n:.3f}, "
          f"database {parts['database'] / n:.3f}) -> at most {60 / per_pair:.0f} pairs/min per orchestrator core; "
          f"workers (task engine on the pool) cpu_s per_pair={r['workers_cpu'] / n:.3f}; "
          f"goal <= {GOAL_CPU_PER_PAIR} per pair (>= {60 / GOAL_CPU_PER_PAIR:.0f} pairs/min)", flush=True)
    print(f"null: stalls (log lines): {stalls or 'none'}", flush=True)
    _print_failures(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=None, help="default 8; 32 with --null-model")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="a few-seconds-per-pair workload: " + str(QUICK))
    parser.add_argument("--cold-pool", action="store_true", help="each run starts its pool (load on the clock)")
    parser.add_argument("--null-model", action="store_true",
                        help="model steps cost nothing: one archive run on --workers times the orchestration alone")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                        help="the Prefect API's database: the embedded SQLite API, or a server on PostgreSQL")
    args = parser.parse_args()
    if args.null_model and args.cold_pool:
        parser.error("--null-model needs the pool started by the benchmark (its preload installs the null model)")
    pairs = args.pairs or (32 if args.null_model else 8)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from deploy.bench_db import count_stalls, prefect_api, tee_stderr
    from dreammover.tiny import ensure_tiny_model
    from dreammover_flows.runners import WORKER_PRELOAD

    work = Path(tempfile.mkdtemp(prefix="dreammover-bench-pool-"))
    try:
        os.environ["DREAMMOVER_HOME"] = str(work / "home")
        model = str(ensure_tiny_model(work / "models"))
        make_pairs(work / "pairs", pairs)
        config = dict(size=args.size, **(QUICK if args.quick else {}))
        print(f"pool: {pairs} pairs, clip settings {config} (the rest: defaults), "
              f"{'pool started by each run' if args.cold_pool else 'pool started before the clock, model preloaded'}"
              f"{', NULL model' if args.null_model else ''}, Prefect API on {args.db}", flush=True)
        figures: dict = {}
        with tee_stderr(work / "stderr.log") as log, prefect_api(args.db, work) as meter:
            if args.null_model:
                from deploy import null_preload

                null_preload.install()  # also here, should a model task run in this process
                r = run(work / "pairs", work, args.workers, model, config, False, meter, "deploy.null_preload")
                r["clips"] = sum(1 for p in (work / f"clips-{args.workers}").rglob("*.mp4") if p.stat().st_size)
            for workers in () if args.null_model else (1, args.workers):
                r = run(work / "pairs", work, workers, model, config, args.cold_pool, meter, WORKER_PRELOAD)
                report, figures[workers] = r["report"], r["seconds"]
                loads = sum(report["pool"]["model_loads"].values())
                print(f"pool: workers={workers} pairs done={report['done']} failed={report['failed']} "
                      f"model_loads={loads} workers_used={len(report['pool']['workers'])} "
                      f"seconds={r['seconds']:.1f} cpu_s: orchestration={r['orchestration_cpu']:.1f} "
                      f"workers={'n/a (pool started by the run)' if args.cold_pool else round(r['workers_cpu'], 1)}",
                      flush=True)
                _print_failures(report)
        # After both contexts: the server and the workers have exited, so their last lines are in the log.
        stalls = {**count_stalls(log), **{f"server: {k}": n for k, n in meter.stalls().items()}}
        if args.null_model:
            _print_null(r, args.workers, args.db, stalls)
            return
        print(f"pool: ratio {args.workers}-worker / 1-worker wall time = {figures[args.workers] / figures[1]:.2f} "
              f"(target <= 0.65; {os.cpu_count()} CPU cores on this machine); stalls (log lines): {stalls or 'none'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
