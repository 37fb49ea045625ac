"""interpolate_archive: every pair under a prefix -> <output>/<pair-id>.<fmt> + <pair-id>.json, and a run report.

    list pairs -> skip finished ones (unless force) -> one interpolate_pair run per pair
    (in this process, or as flow runs of a deployment on the GPU work pool) -> report

One bad pair never stops the others: it is reported as failed with its reason.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from dreammover.config import InterpolationConfig
from tasks.encode import FORMATS
from tasks.ingest import PairSpec, list_pairs
from tasks.models import ModelSpec
from tasks.storage import open_storage

from .pair import Refresh, interpolate_pair
from .runners import default_cache

# Report status -> CLI exit code (documented in docs/pipeline.md).
EXIT_CODES = {"ok": 0, "empty": 0, "partial": 3, "failed": 4}


def report_status(done: int, skipped: int, failed: int) -> str:
    if failed == 0:
        return "ok" if done + skipped else "empty"
    return "partial" if done + skipped else "failed"


def _reason(exc: BaseException | None, fallback: str) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else fallback


@flow(name="interpolate-archive")
def interpolate_archive(source: str, output: str, config: InterpolationConfig = InterpolationConfig(),
                        model: ModelSpec = ModelSpec(), fps: float = 10.0, fmt: str = "mp4",
                        manifest: Optional[str] = None, force: bool = False, cache: Optional[str] = None,
                        dask: Optional[str] = None, refresh: Refresh = "none",
                        pair_deployment: Optional[str] = None) -> dict:
    """Run the pair flow for every pair of `source` (local folder or s3:// prefix); return the run report.

    pair_deployment: e.g. 'interpolate-pair/gpu' to run each pair as its own flow run on the
    deployment's work pool (fan-out across GPU machines) instead of in this process.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported clip format {fmt!r}: use one of {', '.join(FORMATS)}")
    log, start = get_run_logger(), time.perf_counter()
    cache, out = cache or default_cache(), open_storage(output)
    pairs = list_pairs(source, manifest)

    entries, todo = [], []
    for pair in pairs:
        clip = out.uri(f"{pair.id}.{fmt}")
        if pair.problem:
            entries.append({"pair": pair.id, "status": "failed", "reason": pair.problem})
        elif not force and out.exists(f"{pair.id}.{fmt}"):
            entries.append({"pair": pair.id, "status": "skipped", "reason": "output exists", "output": clip})
        else:
            todo.append((pair, clip))
    log.info("%d pair(s): %d to run, %d skipped, %d malformed", len(pairs), len(todo),
             sum(e["status"] == "skipped" for e in entries), sum(e["status"] == "failed" for e in entries))

    params = dict(config=config, model=model, fps=fps, cache=cache, dask=dask, refresh=refresh)
    runner = _run_on_pool if pair_deployment else _run_here
    entries += runner(todo, params, pair_deployment)

    counts = {s: sum(e["status"] == s for e in entries) for s in ("done", "skipped", "failed")}
    report = {"status": report_status(**counts), **counts, "source": source, "output": out.uri(),
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(time.perf_counter() - start, 3),
              "pairs": sorted(entries, key=lambda e: e["pair"])}
    stamp = report["finished_at"].replace(":", "").replace("-", "")
    report["report"] = out.write_bytes(f"_runs/{stamp}-report.json", json.dumps(report, indent=2).encode() + b"\n")
    _publish(report)
    log.info("archive %s: %d done, %d skipped, %d failed -> %s", report["status"], counts["done"],
             counts["skipped"], counts["failed"], report["report"])
    return report


def _run_here(todo: list[tuple[PairSpec, str]], params: dict, _deployment) -> list[dict]:
    """One pair flow after the other in this process: they share the loaded model (one per GPU)."""
    entries = []
    for i, (pair, clip) in enumerate(todo, 1):
        get_run_logger().info("pair %d/%d: %s", i, len(todo), pair.id)
        state = interpolate_pair(pair.image0, pair.image1, clip, pair_id=pair.id, return_state=True, **params)
        if state.is_completed():
            summary = state.result()
            entries.append({"pair": pair.id, "status": "done", "output": summary["output"],
                            "seconds": summary["seconds"], "stages": {k: v.get("status") for k, v in
                                                                      summary["stages"].items() if "status" in v}})
        else:
            exc = state.result(raise_on_failure=False)
            entries.append({"pair": pair.id, "status": "failed", "reason": _reason(exc, state.message or state.name)})
    return entries


def _run_on_pool(todo: list[tuple[PairSpec, str]], params: dict, deployment: str) -> list[dict]:
    """Start every pair as a flow run of `deployment` (workers pick them up in parallel), then wait."""
    from prefect.deployments import run_deployment

    params = {**params, "config": params["config"].model_dump(), "model": params["model"].model_dump()}
    started = [(pair, clip, run_deployment(deployment, timeout=0, as_subflow=True, parameters=dict(
        image0=pair.image0, image1=pair.image1, output=clip, pair_id=pair.id, **params))) for pair, clip in todo]
    entries = []
    for pair, clip, run in started:
        run = _wait(run.id)
        ok = run.state is not None and run.state.is_completed()
        entries.append({"pair": pair.id, "status": "done" if ok else "failed", "output": clip,
                        "flow_run_id": str(run.id), **({} if ok else {"reason": run.state.message if run.state
                                                       else "no final state"})})
    return entries


def _wait(flow_run_id, poll_seconds: float = 10.0):
    """Poll the API until the flow run is final (the pairs run elsewhere; this only watches)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(poll_seconds)


def _publish(report: dict) -> None:
    """The report as a Prefect artifact, so the UI shows it next to the flow run."""
    rows = "\n".join(f"| {e['pair']} | {e['status']} | {e.get('reason', e.get('output', ''))} |"
                     for e in report["pairs"])
    create_markdown_artifact(
        key="archive-report", description=f"archive run: {report['status']}",
        markdown=f"**{report['status']}**: {report['done']} done, {report['skipped']} skipped, "
                 f"{report['failed']} failed\n\n| pair | status | output / reason |\n|---|---|---|\n{rows}\n")
