"""interpolate_archive: every pair under a prefix -> <output>/<pair-id>.<fmt> + <pair-id>.json, and a run report.

    check the output is writable -> list pairs (an empty source is an error unless allowed)
    -> skip pairs whose summary matches the clip they would get now -> lease each pair (short
       leases, renewed by a heartbeat thread while this run lives: tasks/leases.py)
    -> interpolate_pair per pair: here, over the Dask GPU pool (pairs concurrently), or as flow
       runs of a deployment -> report (written even when the run is cancelled or crashes)

On the Dask pool, the model tasks of a pair that times out, and of every pair when the run is
interrupted, are cancelled on the scheduler, so no GPU works for a pair the run gave up on.

This flow orchestrates only: it never loads a model, so it runs on a CPU worker. One bad pair
never stops the others. A run with failed pairs ends Failed (named Partial when some pairs
were done), with the report as its result and as a markdown artifact.
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.exceptions import MissingResult
from prefect.states import Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from dreammover.config import InterpolationConfig
from dreammover.model_identity import visible_identity
from dreammover.models import default_cache_dir
from dreammover_tasks import leases
from dreammover_tasks.encode import FORMATS
from dreammover_tasks.ingest import PairSpec, list_pairs
from dreammover_tasks.models import ModelSpec
from dreammover_tasks.restyle import RestyleSettings
from dreammover_tasks.storage import StorageError, open_storage, retry_transient

from . import archive_discover, archive_leases, archive_log
from .archive_plan import _is_current, _plan, _summary  # noqa: F401 - _plan is also tested from here
from .deployment_runs import run_on_deployment
from .pair import PAIR_TIMEOUT, AnyConfig, Backend, Refresh, backend_config, clip_preset, interpolate_pair
from .runners import cancel_pool_work, default_cache, gpu_pool, pool_runner, tag_pool_work

# Report status -> CLI exit code (documented in docs/pipeline.md).
EXIT_CODES = {"ok": 0, "empty": 0, "partial": 3, "failed": 4, "cancelled": 4}


class OutputNotWritable(StorageError):
    """The output location refuses a test write: found before any pair is computed."""


class EmptySource(ValueError):
    """No pairs under the source: most often a mistyped prefix, so an error unless allowed."""


class ArchiveIncomplete(RuntimeError):
    """Some pairs failed: the Failed (or Partial) state's exception, carrying the run report."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report

    def __reduce__(self):
        return type(self), (str(self), self.report)


def report_status(done: int, skipped: int, failed: int) -> str:
    if failed == 0:
        return "ok" if done + skipped else "empty"
    return "partial" if done + skipped else "failed"


def _reason(exc: BaseException | None, fallback: str) -> str:
    return f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else fallback


def check_writable(out, run_id: str) -> None:
    """Write and delete a probe object, so a bad output fails the run before any GPU work."""
    probe = f"_runs/.probe-{run_id}"
    try:
        retry_transient(out.write_bytes, probe, b"")  # a throttled store is not an unwritable one
        retry_transient(out.delete, probe)
    except (StorageError, OSError) as err:
        raise OutputNotWritable(f"output {out.uri()} is not writable: {err}") from err


def check_source(pairs: list[PairSpec], source: str, allow_empty: bool) -> list[PairSpec]:
    """`pairs` (the source's, listed once); EmptySource if there are none and that was not allowed."""
    if not pairs and not allow_empty:
        raise EmptySource(f"no pairs under {source} (expected <pair-id>/0.*, 1.*; check the prefix, "
                          f"or allow an empty source with --allow-empty)")
    return pairs


@flow(name="interpolate-archive", timeout_seconds=48 * 3600,
      task_runner=ThreadPoolTaskRunner(max_workers=64))
def interpolate_archive(source: str, output: str, config: AnyConfig = InterpolationConfig(),
                        model: ModelSpec = ModelSpec(), fps: float = 10.0, fmt: str = "mp4",
                        manifest: Optional[str] = None, force: bool = False, cache: Optional[str] = None,
                        dask: Optional[str] = None, refresh: Refresh = "none",
                        pair_deployment: Optional[str] = None, allow_empty: bool = False,
                        pair_timeout: float = PAIR_TIMEOUT, parallel_pairs: int = 0, backend: Backend = "dreammover",
                        preset: Optional[str] = None, discover: bool = False,
                        discover_config: Optional[dict] = None, restyle: Optional[RestyleSettings] = None):
    """Run the pair flow for every pair of `source` (local folder or s3:// prefix); return the run report.

    Ends Completed (result: the report) when no pair failed; otherwise Failed, named Partial if
    some pairs were done, whose exception (ArchiveIncomplete) carries the report.

    dask: the GPU pool (see flows/runners.py); pairs then run concurrently, `parallel_pairs` at a
    time (0: twice the pool's workers). pair_deployment: e.g. 'interpolate-pair/gpu-k8s' to run
    each pair as a flow run of that deployment instead. pair_timeout: seconds before a pair
    counts as failed (and its run is cancelled). allow_empty: an empty source is 'empty', not an error.
    backend: dreammover | svd (config then holds SVDKeyframeConfig fields), recorded in each fingerprint.
    preset: a clip preset name (reel, story, ...), built as the studio builds it; in each fingerprint.
    discover: find the pairs in a folder of photos as people keep them (dreammover.discover, with
    `discover_config` its DiscoverConfig fields), only those new since the state in the output
    (flows/archive_discover.py); nothing new is an empty run, not an error.
    restyle: edit every clip with text (DreamMotion) before publishing; in each fingerprint when given.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unsupported clip format {fmt!r}: use one of {', '.join(FORMATS)}")
    config = backend_config(backend, config)  # an unknown backend fails here, before any pair
    recipe = clip_preset(preset, f"clip.{fmt}")  # and an unknown preset
    log, start = get_run_logger(), time.perf_counter()
    archive_log.install_filter()
    run_id = str(getattr(get_run_context().flow_run, "id", uuid.uuid4()))
    cache, out = cache or default_cache(), open_storage(output)
    # Once each, here only (the CLI leaves both to this flow): one probe write, one listing of the source.
    check_writable(out, run_id)
    if discover:  # only what is new since the state in the output (and what earlier runs left pending)
        if manifest:
            raise ValueError("discover finds the pairs itself: give either a manifest or discover, not both")
        found = archive_discover.discover_new(source, output, discover_config)
        pairs = found.pairs
    else:
        pairs = check_source(list_pairs(source, manifest), source, allow_empty)

    entries: dict[str, dict] = {}
    wanted: dict[str, str] = {}  # pair id -> the fingerprint of the clip these settings give
    # The fingerprint names the model by its spec; a model retrained in place keeps its spec, so the
    # weights as this machine sees them (content hash, hub commit) are compared with the summary's too.
    weights = visible_identity(model.model, default_cache_dir()) if backend == "dreammover" else None
    todo = _plan(pairs, out, entries, dict(model=model, config=config, fps=fps, fmt=fmt, backend=backend,
                                           weights=weights, preset=recipe, restyle=restyle), force, wanted)
    log.info("%d pair(s): %d to run, %d skipped, %d malformed", len(pairs), len(todo),
             sum(e["status"] == "skipped" for e in entries.values()),
             sum(e["status"] == "failed" for e in entries.values()))
    params = dict(config=config, model=model, fps=fps, cache=cache, refresh=refresh, backend=backend, preset=preset,
                  restyle=restyle)
    outcome = "finished"
    try:
        # Short leases renewed from a heartbeat thread while this run lives, each released as soon as
        # its pair ends (a run waiting for it goes on), the rest when the run ends.
        with leases.LeaseKeeper(out, run_id, leases.TTL, log=log) as keeper, \
                gpu_pool(None if pair_deployment else dask) as address:
            def render(pairs_: list) -> None:
                if not pairs_:
                    return
                if pair_deployment:
                    run_on_deployment(pairs_, params, pair_deployment, pair_timeout, entries, keeper,
                                      finished=keeper.release)
                elif address:
                    _run_on_pool(pairs_, params, address, pair_timeout, parallel_pairs, entries,
                                 finished=keeper.release)
                else:
                    _run_here(pairs_, {**params, "dask": None}, entries, finished=keeper.release)

            mine, others = archive_leases.take(todo, keeper, entries)
            render(mine)
            archive_leases.wait_for_others(others, keeper, entries, functools.partial(_is_current, wanted),
                                           render, pair_timeout, log)
    except BaseException as exc:  # cancellation (SIGTERM -> TerminationSignal), timeout, crash
        outcome = f"interrupted: {type(exc).__name__}"
        raise
    finally:
        for pair, clip in todo:
            entries.setdefault(pair.id, {"pair": pair.id, "status": "failed", "output": clip,
                                         "reason": f"not finished: the archive run was {outcome}"})
        archive_leases.sweep(out, log)
        report = _report(entries, source, out, start, outcome)
    if discover:  # after a finished run only: an interrupted one leaves the state as it was (CAS, DESIGN §9)
        _quietly(archive_discover.save_state, out, found, entries, log)
    # One line, also for a Partial run (the engine's traceback of ArchiveIncomplete is filtered out).
    log.log(archive_log.level(report), "%s; report: %s", archive_log.one_line(report), report.get("report"))
    if report["status"] in ("ok", "empty"):
        return Completed(message=f"{report['done']} done, {report['skipped']} skipped", data=report)
    first = next(e for e in report["pairs"] if e["status"] == "failed")
    message = (f"{report['status']}: {report['failed']} of {len(report['pairs'])} pair(s) failed; first: "
               f"{first['pair']}: {first.get('reason')}; report: {report.get('report')}")
    # A Failed state (named Partial when some pairs were done) so alerts and the UI see it; its
    # exception carries the report for callers (the CLI maps it to exit 3 / 4).
    return Failed(name="Partial" if report["status"] == "partial" else "Failed", message=message,
                  data=ArchiveIncomplete(message, report))


def _done(pair: PairSpec, summary: dict) -> dict:
    return {"pair": pair.id, "status": "done", "output": summary["output"], "seconds": summary["seconds"],
            "flow_run_id": summary.get("flow_run_id"), "pool": summary.get("pool", {}),
            "stages": {k: v.get("status") for k, v in summary["stages"].items() if "status" in v}}


def _from_state(pair: PairSpec, state, clip: str) -> dict:
    if state.is_completed():
        try:
            return _done(pair, state.result())
        except MissingResult:
            # The API handed back the final state without its data (seen with the SQLite API under
            # lock contention: a retried state update). The pair's summary, written last, is its
            # own record of success; take it only if that very flow run wrote it.
            summary = _summary(clip)
            run_id = state.state_details.flow_run_id
            if summary is None or run_id is None or summary.get("flow_run_id") != str(run_id):
                raise
            return _done(pair, summary)
    exc = state.result(raise_on_failure=False)
    return {"pair": pair.id, "status": "failed", "reason": _reason(exc, state.message or state.name)}


def _run_here(todo, params: dict, entries: dict, finished=None) -> None:
    """One pair flow after the other in this process: they share the one loaded model."""
    for i, (pair, clip) in enumerate(todo, 1):
        get_run_logger().info("pair %d/%d: %s", i, len(todo), pair.id)
        state = interpolate_pair(pair.image0, pair.image1, clip, pair_id=pair.id, inputs=pair.inputs(),
                                 keyframes=pair.keyframes, motions=pair.motions, return_state=True, **params)
        entries[pair.id] = _from_state(pair, state, clip)
        if finished is not None:
            finished(pair.id)


def pool_pair_flow(address: str, timeout: float):
    """The pair flow as the archive runs it on the pool, built once per run: `with_options` builds a new
    Flow, regenerating its parameter schema (about 80 ms of CPU; it was once per pair)."""
    return interpolate_pair.with_options(task_runner=pool_runner(address), timeout_seconds=timeout,
                                         flow_run_name="pair-{pair_id}")


@task(name="run-pair", cache_policy=NO_CACHE)
def run_pair_on_pool(pair: PairSpec, clip: str, params: dict, address: str, flow) -> dict:
    """One pair flow (`pool_pair_flow`) whose model tasks go to the Dask GPU pool (this thread only waits)."""
    state = flow(pair.image0, pair.image1, clip, pair_id=pair.id, dask=address, inputs=pair.inputs(),
                 keyframes=pair.keyframes, motions=pair.motions, return_state=True, **params)
    return _from_state(pair, state, clip)


def _run_on_pool(todo, params: dict, address: str, timeout: float, parallel: int, entries: dict,
                 finished=None) -> None:
    """Pairs concurrently: a window of pair flows, refilled as soon as any of them ends; Dask places
    their model tasks on free GPUs.

    The window (default: twice the pool's workers) keeps other pairs' model tasks queued while a
    pair is between steps on the orchestration side (prepare, encode, its next submit), so no GPU
    waits for it; whichever pair ends first makes room, not the oldest (that left GPUs idle).

    A pair that times out has its unfinished Dask tasks cancelled, and so has every pair when
    this phase ends, whether interrupted (cancellation, crash) or not: otherwise tasks already
    queued on the scheduler would still run on the GPUs after the archive gave up on them (a
    pair flow's own client releases them only when that flow ends, which nobody waits for).
    """
    workers = _pool_size(address)
    parallel = parallel or 2 * workers
    # A GPU per pair already keeps the pool busy; fewer pairs than GPUs split their δ frames.
    params = {**params, "spread": max(1, workers // max(1, len(todo)))}
    get_run_logger().info("GPU pool at %s: %d pair(s), %d at a time", address, len(todo), parallel)
    waiting, running = collections.deque(todo), {}
    run = uuid.uuid4().hex  # tags this phase's Dask tasks, per pair (see flows/runners.cancel_pool_work)
    cancel = functools.partial(_cancel_pool_work, address, run)
    flow = pool_pair_flow(address, timeout)
    try:
        while waiting or running:
            while waiting and len(running) < parallel:
                pair, clip = waiting.popleft()
                with tag_pool_work(run, pair.id):  # the run-pair task's thread inherits the tag with its context
                    future = run_pair_on_pool.submit(pair, clip, params, address, flow)
                running[future] = (pair, time.monotonic() + timeout)
            ended = _wait_any(running, min(deadline for _, deadline in running.values()))
            for future in ended:
                pair, deadline = running.pop(future)
                _collect(pair, future, deadline, entries, cancel)
                if finished is not None:
                    finished(pair.id)
    finally:
        # Also catches what a timed-out pair submitted after its own cancel (it was between steps).
        _quietly(cancel)


def _wait_any(running: dict, deadline: float) -> list:
    """The run-pair futures that ended, waiting until one does or `deadline` passes (then: those past it)."""
    threads = {f.wrapped_future: f for f in running}  # concurrent futures of the archive's thread pool
    done, _ = concurrent.futures.wait(list(threads), timeout=max(0.0, deadline - time.monotonic()),
                                      return_when=concurrent.futures.FIRST_COMPLETED)
    now = time.monotonic()
    return [f for f, (_, due) in running.items() if f.wrapped_future in done or due <= now]


def _cancel_pool_work(address: str, run: str, pair_id: Optional[str] = None) -> None:
    if count := cancel_pool_work(address, run, pair_id):
        get_run_logger().warning("cancelled %d unfinished Dask task(s) of %s", count,
                                 f"pair {pair_id}" if pair_id else "this archive run")


def _collect(pair: PairSpec, future, deadline: float, entries: dict, cancel=None) -> None:
    """Wait (until the pair's deadline) for one pair's run-pair task and record its entry; `cancel(pair_id)`
    drops the Dask work of a pair that timed out."""
    if pair.id in entries:
        return
    future.wait(timeout=max(0.0, deadline - time.monotonic()))
    if not future.state.is_final():
        entries[pair.id] = {"pair": pair.id, "status": "failed", "reason": "timed out (pair_timeout)"}
        if cancel is not None:
            _quietly(cancel, pair.id)
    elif future.state.is_completed():
        entries[pair.id] = future.result()
    else:
        entries[pair.id] = {"pair": pair.id, "status": "failed", "reason": _reason(
            future.result(raise_on_failure=False), future.state.message or future.state.name)}


def _pool_size(address: str) -> int:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return max(1, len(client.scheduler_info().get("workers", {})))


def _report(entries: dict, source: str, out, start: float, outcome: str) -> dict:
    """Write <output>/_runs/<time>-report.json and the markdown artifact; never raises (it runs in `finally`)."""
    rows = sorted(entries.values(), key=lambda e: e["pair"])
    counts = {s: sum(e["status"] == s for e in rows) for s in ("done", "skipped", "failed")}
    status = report_status(**counts) if outcome == "finished" else "cancelled"
    loads: dict[str, int] = {}
    for e in rows:
        for worker, n in e.get("pool", {}).get("model_loads", {}).items():
            loads[worker] = max(loads.get(worker, 0), n)
    report = {"status": status, **counts, "source": source, "output": out.uri(), "outcome": outcome,
              "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "seconds": round(time.perf_counter() - start, 3),
              "pool": {"workers": sorted(loads), "model_loads": loads}, "pairs": rows}
    stamp = report["finished_at"].replace(":", "").replace("-", "")
    name = f"_runs/{stamp}-{uuid.uuid4().hex[:6]}-report.json"
    report["report"] = _quietly(out.write_bytes, name, json.dumps(report, indent=2).encode() + b"\n")
    _quietly(_publish, report)
    return report


def _quietly(fn, *args):
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - reporting must not hide the run's own outcome
        get_run_logger().error("%s failed: %s", getattr(fn, "__name__", fn), err)
        return None


def _publish(report: dict) -> None:
    """The report as a Prefect artifact, so the UI shows it next to the flow run (reasons included)."""
    rows = "\n".join(f"| {e['pair']} | {e['status']} | {e.get('reason', e.get('output', ''))} |"
                     for e in report["pairs"])
    create_markdown_artifact(
        key="archive-report", description=f"archive run: {report['status']}",
        markdown=f"**{report['status']}**: {report['done']} done, {report['skipped']} skipped, "
                 f"{report['failed']} failed\n\n| pair | status | output / reason |\n|---|---|---|\n{rows}\n")
