"""The Prefect API of deploy/bench_pool.py: the embedded SQLite one (default) or a real server on PostgreSQL.

sqlite:   flows/local_api.py's temporary API (a uvicorn child on SQLite), what one-off runs use.
postgres: a throwaway PostgreSQL cluster from deploy/pg_start.sh and `prefect server start` on
          127.0.0.1 against it, as deploy/smoke.sh runs the stack (and compose in production).
Each yields a `ServerCPU` that tells the CPU seconds the API server and its database have used
so far (the database is inside the server process on SQLite). `tee_stderr` keeps a copy of what
this process and its children (the SQLite API, the Dask workers) write to stderr, and
`count_stalls` counts the lines there that name a stall ("database is locked", 503s, ...).
Everything started here is stopped on exit.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import psutil

ROOT = Path(__file__).resolve().parents[1]
# Log lines that tell the API stalled: SQLite's lock, the 503s it answers meanwhile, lost results, client retries.
STALLS = ("database is locked", "503 Service Unavailable", "MissingResult", "retryable status code",
          "QueuePool limit")


def tree_cpu(root: psutil.Process, children: bool = True) -> float:
    """CPU seconds of a process and all its descendants, live or already reaped (those count in children_*)."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + ((t.children_user + t.children_system) if children else 0.0)
    return total


class ServerCPU:
    """CPU seconds so far of the API server's process tree and of its database's (0 when inside the server)."""

    def __init__(self, server: Callable[[], psutil.Process | None], database: Callable[[], psutil.Process | None],
                 log: Path | None = None):
        self._server, self._database, self.log = server, database, log

    def server(self) -> float:
        proc = self._server()
        return tree_cpu(proc) if proc else 0.0

    def database(self) -> float:
        proc = self._database()
        return tree_cpu(proc) if proc else 0.0

    def stalls(self) -> dict[str, int]:
        """Lines of the server's own log naming each stall (the SQLite API's output is in stderr instead)."""
        return count_stalls(self.log)


def count_stalls(log: Path | None) -> dict[str, int]:
    """How many lines of `log` name each stall (only those seen)."""
    if log is None or not log.exists():
        return {}
    lines = log.read_text(errors="replace").splitlines()
    counts = {s: sum(s in line for line in lines) for s in STALLS}
    return {s: n for s, n in counts.items() if n}


@contextlib.contextmanager
def tee_stderr(copy: Path) -> Iterator[Path]:
    """Write file descriptor 2 (this process's and every child started meanwhile) to stderr AND to `copy`."""
    read, write = os.pipe()
    saved = os.dup(2)

    def pump() -> None:
        with copy.open("ab") as out, os.fdopen(read, "rb", buffering=0) as src:
            for chunk in iter(lambda: src.read(65536), b""):
                os.write(saved, chunk)
                out.write(chunk)

    thread = threading.Thread(target=pump, name="tee-stderr", daemon=True)
    thread.start()
    sys.stderr.flush()
    os.dup2(write, 2)
    os.close(write)
    try:
        yield copy
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # our end of the pipe closes; the pump ends when the children's ends are closed too
        thread.join(timeout=30)
        os.close(saved)


def _uvicorn_child() -> psutil.Process | None:
    """flows/local_api.py's server: the child of this process running uvicorn."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "uvicorn" in " ".join(child.cmdline()):
                return child
    return None


def _wait_health(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"prefect server did not answer in {timeout:.0f} s: {log.read_text()[-2000:]}")
        time.sleep(0.3)


@contextlib.contextmanager
def _postgres(work: Path) -> Iterator[ServerCPU]:
    from dreammover_flows.local_api import free_port, stop_process
    from prefect.settings import PREFECT_API_URL, temporary_settings

    pg = work / "pg"
    db_url = subprocess.run(["bash", str(ROOT / "deploy" / "pg_start.sh"), str(pg), str(free_port())],
                            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    server, log = None, work / "prefect-server.log"
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "PREFECT_API_DATABASE_CONNECTION_URL": db_url, "PREFECT_HOME": str(work / "prefect"),
               "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        with log.open("wb") as out:
            server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                                       "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        _wait_health(url, server, log)
        postmaster = int((pg / "data" / "postmaster.pid").read_text().split()[0])
        print(f"bench: Prefect server on PostgreSQL ({db_url}) at {url}", flush=True)
        # The Dask workers are spawned later from this environment: they must talk to this server too.
        os.environ["PREFECT_API_URL"] = url
        with temporary_settings({PREFECT_API_URL: url}):
            yield ServerCPU(lambda: psutil.Process(server.pid), lambda: psutil.Process(postmaster), log)
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        if server is not None:
            stop_process(server, 20)
        subprocess.run(["bash", str(ROOT / "deploy" / "pg_start.sh"), "--stop", str(pg)], check=False)


@contextlib.contextmanager
def prefect_api(db: str, work: Path) -> Iterator[ServerCPU]:
    """A Prefect API for the benchmark's runs on `db` (sqlite | postgres), with its CPU meter."""
    if db == "postgres":
        with _postgres(work) as meter:
            yield meter
        return
    from dreammover_flows.local_api import temporary_api

    with temporary_api():
        yield ServerCPU(_uvicorn_child, lambda: None)
