"""A Partial archive run says so in one line, not as a crash (issue #15 item 7): the worker's engine
raised ArchiveIncomplete from the final state and logged it at ERROR with a full traceback.
Runs the flow through prefect.flow_engine.run_flow with an error logger, as a worker process does.
"""
from __future__ import annotations

import json
import logging

import pytest

from dreammover import InterpolationConfig


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _archive(tmp_path):
    """One pair already up to date (skipped), one with an unsafe id (failed): a Partial run, no rendering."""
    from dreammover_flows.pair import fingerprint
    from dreammover_tasks.models import ModelSpec

    for pid in ("dog", "a\\b"):
        (tmp_path / "src" / pid).mkdir(parents=True)
        for side in ("0", "1"):
            (tmp_path / "src" / pid / f"{side}.png").write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "dog.mp4").write_bytes(b"clip")
    src = tmp_path / "src" / "dog"
    model = ModelSpec(model="tiny")
    wanted = fingerprint(str(src / "0.png"), str(src / "1.png"), model, InterpolationConfig(), 10.0, "mp4")
    (out / "dog.json").write_text(json.dumps({"fingerprint": wanted}))
    return dict(source=str(tmp_path / "src"), output=str(out), model=model)


def test_a_partial_run_on_a_worker_logs_one_line_and_no_traceback(prefect_env, tmp_path):
    from prefect.flow_engine import run_flow
    from prefect.logging.loggers import get_logger

    from dreammover_flows.archive import ArchiveIncomplete, interpolate_archive

    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.engine")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with pytest.raises(ArchiveIncomplete) as info:  # the worker's engine still raises it: the run is Failed
            run_flow(interpolate_archive, parameters=_archive(tmp_path), error_logger=get_logger("flow_runs"))
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert info.value.report["status"] == "partial"
    with_traceback = [r.getMessage() for r in handler.records if r.exc_info]
    assert with_traceback == [], with_traceback
    errors = [r.getMessage() for r in handler.records if r.levelno >= logging.ERROR]
    assert errors == [], errors
    (line,) = [r for r in handler.records if r.getMessage().startswith("archive ")]
    assert line.levelno == logging.WARNING
    assert "partial, 0 done, 1 skipped, 1 failed: a\\b: pair id" in line.getMessage(), line.getMessage()
