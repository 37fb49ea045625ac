"""The embedded CLI's temporary Prefect API: a uvicorn child that dies with the command, even on SIGKILL.

Prefect's own ephemeral server is a child process stopped by an atexit hook, which a SIGKILL
skips, leaving a server running. Here the child asks the kernel for SIGTERM when its parent
dies (Linux PR_SET_PDEATHSIG); elsewhere Prefect's own ephemeral server is used as before.
With PREFECT_API_URL set, nothing is started: the runs go to that server.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Iterator, Optional


def _die_with_parent() -> None:  # runs in the child between fork and exec
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _drain(timeout: float = 10.0) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            service.drain_all(timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def temporary_api(timeout: float = 180.0) -> Iterator[Optional[str]]:
    """Yield the API URL of a temporary server for this command (None: a server is configured, or not Linux)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value() or not sys.platform.startswith("linux"):
        yield None
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "prefect.server.api.server:create_app",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
                            env=env, preexec_fn=_die_with_parent, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the temporary Prefect API exited with code {proc.returncode}")
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the temporary Prefect API did not start in time") from None
                time.sleep(0.2)
        with temporary_settings({PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                _drain()  # send queued logs/events while the server still answers (exit would hang on them)
    finally:
        stop_process(proc, 10)


def stop_process(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaped either way."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
