"""The Python half of deploy/smoke.sh: write the local prefect.yaml, then check the stack end to end.

    python deploy/smoke_check.py localize deploy/prefect.yaml OUT.yaml --source DIR --output DIR ...
    python deploy/smoke_check.py run --output DIR --gpu-workers 2 --start EPOCH --logs DIR
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

# Tiny but complete: every stage runs (the same settings as the pipeline tests).
TINY = dict(size=64, num_frames=4, frames_per_batch=2, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)
DAILY = "interpolate-archive/daily"


def localize(args) -> None:
    spec = yaml.safe_load(Path(args.src).read_text())
    model = {"model": args.model, "device": "cpu", "dtype": "fp32"}
    keep = []
    for d in spec["deployments"]:
        if d["name"] not in ("pool", "daily"):
            continue  # the Kubernetes deployment needs a cluster
        d["parameters"].update(cache=args.cache, model=model, dask=args.dask, config=TINY)
        if d["name"] == "daily":
            d["parameters"].update(source=args.source, output=args.output, pair_timeout=400)
        keep.append(d)
    spec["deployments"] = keep
    spec.pop("definitions", None)
    Path(args.dst).write_text(yaml.safe_dump(spec, sort_keys=False))


def _scheduled_runs(client) -> int:
    """Runs the server's scheduler created for the cron deployment (auto_scheduled, not triggered)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = client.read_deployment_by_name(DAILY)
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                                 limit=200)
    return sum(bool(r.auto_scheduled) and r.state_type is not None and r.state_type.value == "SCHEDULED"
               for r in runs)


def run(args) -> int:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + args.timeout
    with get_client(sync_client=True) as client:
        scheduled = 0
        while not scheduled and time.monotonic() < deadline and time.monotonic() < deadline - args.timeout + 90:
            scheduled = _scheduled_runs(client)
            time.sleep(1 if not scheduled else 0)
        flow_run = run_deployment(DAILY, timeout=0)
        state = None
        while time.monotonic() < deadline:
            state = client.read_flow_run(flow_run.id).state
            if state is not None and state.is_final():
                break
            time.sleep(2)
    reports = sorted(Path(args.output, "_runs").glob("*-report.json")) if Path(args.output, "_runs").is_dir() else []
    report = json.loads(reports[-1].read_text()) if reports else {}
    loads = report.get("pool", {}).get("model_loads", {})
    done, failed = report.get("done", 0), report.get("failed", 0)
    workers = len(report.get("pool", {}).get("workers", []))
    seconds = round(time.time() - args.start)
    print(f"smoke: pairs done={done} failed={failed} model_loads={sum(loads.values())} workers_used={workers} "
          f"seconds={seconds}")
    problems = []
    if not (state is not None and state.is_completed()):
        problems.append(f"archive run ended {state.name if state else 'nowhere'}: {state.message if state else ''}")
    if (done, failed) != (3, 0):
        problems.append(f"expected 3 done, 0 failed: {[(e['pair'], e.get('reason')) for e in report.get('pairs', [])]}")
    if sum(loads.values()) > args.gpu_workers:
        problems.append(f"{sum(loads.values())} model loads for {args.gpu_workers} GPU workers: {loads}")
    if workers != args.gpu_workers:
        problems.append(f"{workers} of {args.gpu_workers} GPU workers used: {loads}")
    if not scheduled:
        problems.append("the server's scheduler created no scheduled run for the cron deployment")
    for p in problems:
        print(f"smoke: FAIL {p}", file=sys.stderr)
    if problems:
        for log in sorted(Path(args.logs).glob("*.log")):
            print(f"--- {log.name} (tail)", file=sys.stderr)
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    loc = sub.add_parser("localize")
    loc.add_argument("src")
    loc.add_argument("dst")
    for name in ("source", "output", "cache", "model", "dask"):
        loc.add_argument(f"--{name}", required=True)
    chk = sub.add_parser("run")
    chk.add_argument("--output", required=True)
    chk.add_argument("--gpu-workers", type=int, default=2)
    chk.add_argument("--start", type=float, default=time.time())
    chk.add_argument("--logs", default=".")
    chk.add_argument("--timeout", type=float, default=540)
    args = parser.parse_args()
    if args.cmd == "localize":
        localize(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
