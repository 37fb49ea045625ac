"""How an archive run's outcome reads in the log: one line, never a crash-like traceback for a Partial run.

A Failed/Partial archive ends in a Failed state whose exception (ArchiveIncomplete) carries the report.
A worker runs the flow through prefect.flow_engine.run_flow, which raises that exception from the final
state and logs it "Engine execution exited with unexpected exception" at ERROR with the full
traceback: read by an operator as a crash. The flow logs its own one-line summary (`one_line`) just
before it ends, so the filter below drops that engine record; every other record, and every other
exception's traceback, passes unchanged.
"""
from __future__ import annotations

import logging

# The loggers Prefect's engine reports a flow's raised final state on (flow_run_logger, engine_logger).
ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.engine")


def one_line(report: dict, first_failed: int = 3) -> str:
    """'archive <source>: partial, 5 done, 1 skipped, 1 failed: <pair>: <reason>; ...' (the first few failures)."""
    failed = [e for e in report.get("pairs", []) if e.get("status") == "failed"]
    head = (f"archive {report.get('source')} -> {report.get('output')}: {report.get('status')}, "
            f"{report.get('done', 0)} done, {report.get('skipped', 0)} skipped, {report.get('failed', 0)} failed")
    shown = "; ".join(f"{e['pair']}: {e.get('reason', '')}" for e in failed[:first_failed])
    more = f" (+{len(failed) - first_failed} more)" if len(failed) > first_failed else ""
    return f"{head}: {shown}{more}" if shown else head


class IncompleteArchiveFilter(logging.Filter):
    """Drops the engine's traceback record of an ArchiveIncomplete: the flow said it in one line already."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (type(exc).__name__ == "ArchiveIncomplete" and isinstance(getattr(exc, "report", None), dict))


def level(report: dict) -> int:
    """INFO when every pair is done or skipped; a Partial run did its job and said what failed: WARNING."""
    return {"ok": logging.INFO, "empty": logging.INFO, "partial": logging.WARNING}.get(report.get("status"),
                                                                                     logging.ERROR)


def install_filter() -> None:
    """Add the filter to the engine's loggers once per process (the flow runs in the worker's process)."""
    for name in ENGINE_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, IncompleteArchiveFilter) for f in logger.filters):
            logger.addFilter(IncompleteArchiveFilter())
