"""Real components to inject faults into: an S3 server (moto) behind a proxy that fails requests or goes
down, distinct photo pairs, and counters of the expensive calls (so "rendered exactly once" is counted).

Faults go into these components (the proxy answers 503 SlowDown or resets the connection; a Dask worker
process is SIGKILLed; a small tmpfs fills up), never into mocks of the code under test.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import random
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

# Small but complete: every stage runs; a pair takes a couple of seconds on 2 CPU cores.
FAST = dict(size=64, num_frames=4, frames_per_batch=2, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b'<Message>Please reduce your request rate.</Message></Error>')
S3_ENV = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A real S3 API (moto_server subprocess) on a free loopback port; yields its URL."""
    exe = shutil.which("moto_server")
    if exe is None:
        import pytest
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    url = f"http://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_http(url)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def serialized_moto() -> Iterator[str]:
    """moto's S3 app in this process, answering one request at a time; yields its URL.

    S3 applies each conditional request atomically; moto's threaded server checks If-Match /
    If-None-Match and then writes without a lock, so two racing requests can both pass the check.
    Serving one request at a time restores S3's per-request atomicity (and only that: the client
    side still races freely), which is what the compare-and-swap tests rely on.
    """
    from moto.server import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
    app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            return [b"".join(app(environ, start_response))]

    server = make_server("127.0.0.1", 0, one_at_a_time, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def s3_store(url: str, bucket: str, prefix: str = "", attempts: int = 5):
    """An S3Storage on the server at `url` (bucket created if needed), with a connection pool for races."""
    import boto3
    from botocore.config import Config

    from dreammover_tasks.storage import S3Storage

    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          config=Config(max_pool_connections=32, retries={"max_attempts": attempts, "mode": "standard"}))
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
        client.create_bucket(Bucket=bucket)
    return S3Storage(bucket, prefix, client=client)


@contextlib.contextmanager
def faulty_s3_env(monkeypatch, tmp_path, buckets=("inputs", "outputs", "cache"), seed: int = 0, proxy_type=None):
    """moto behind a FaultyProxy (or `proxy_type(upstream)`, e.g. a counting one): boto3 in the code under
    test talks to the proxy (AWS_* env), and the yielded `direct` client to moto itself (to look at what
    the store holds without faults)."""
    import boto3

    make = proxy_type or (lambda upstream: FaultyProxy(upstream, seed=seed))
    with moto_server() as upstream, make(upstream) as proxy:
        nowhere = tmp_path / "no-aws-config"
        for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": proxy.url, "AWS_CONFIG_FILE": str(nowhere),
                     "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}.items():
            monkeypatch.setenv(k, v)
        direct = boto3.client("s3", endpoint_url=upstream, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in buckets:
            direct.create_bucket(Bucket=bucket)
        yield proxy, direct


def _wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not start")
            time.sleep(0.2)


class FaultyProxy:
    """An HTTP proxy in front of an S3 server that fails a share of requests and can go fully down.

    `fail_share` of requests (seeded) are answered 503 SlowDown or have their connection reset,
    half each; during `outage(seconds)` every request's connection is reset. `counts` records what
    happened, so a test can show that faults were really injected.
    """

    def __init__(self, upstream: str, fail_share: float = 0.0, seed: int = 0):
        self.upstream = upstream.split("://", 1)[1]
        self.fail_share = fail_share
        self.down_until = 0.0
        self.counts = {"forwarded": 0, "slow_down": 0, "reset": 0, "down": 0}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "FaultyProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def outage(self, seconds: float) -> None:
        """From now on, for `seconds`, the store is down: every request's connection is reset."""
        self.down_until = time.monotonic() + seconds

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def fault(self) -> str | None:
        """What to do with the next request: None (forward), 'slow_down', 'reset' or 'down'."""
        with self._lock:
            if self.is_down():
                kind = "down"
            elif self._rng.random() < self.fail_share:
                kind = self._rng.choice(["slow_down", "reset"])
            else:
                kind = "forwarded"
            self.counts[kind] += 1
        return None if kind == "forwarded" else kind


def _handler(proxy: FaultyProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet: tests read counts, not access logs
            pass

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            except (ConnectionError, OSError):
                self.close_connection = True

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                data = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline().strip():
                            pass
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reset(self) -> None:
            # SO_LINGER 0 makes close() send RST: the client sees "connection reset by peer".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True

        def _proxy(self) -> None:
            body = self._body()
            kind = proxy.fault()
            if kind in ("reset", "down"):
                return self._reset()
            if kind == "slow_down":
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(SLOW_DOWN)))
                self.end_headers()
                self.wfile.write(SLOW_DOWN)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
            headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _proxy

    return Handler


def distinct_pair(folder: str | Path, index: int, size: int = 64) -> list[Path]:
    """The procedural sample pair with a marker square whose place and colour depend on `index`.

    Pairs must differ in content: identical photos share every content-keyed cache entry (their
    LoRA, their inversion), so counting fits would not count pairs.
    """
    import cv2
    import numpy as np

    from dreammover.sample import sample_pair

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(index)
    x, y = (int(v) for v in rng.integers(0, size - size // 6, 2))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    paths = []
    for i, im in enumerate(sample_pair(size)):
        im = np.ascontiguousarray(im)
        cv2.rectangle(im, (x, y), (x + size // 8, y + size // 8), colour, -1)
        paths.append(folder / f"{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return paths


class CallCounter:
    """Counts calls of DreamMover methods in this process, thread-safely (runs race in threads)."""

    def __init__(self, monkeypatch, *names: str):
        from dreammover.pipeline import DreamMover

        self.counts = {n: 0 for n in names}
        self._lock = threading.Lock()
        for name in names:
            original = getattr(DreamMover, name)

            def spy(dm, *a, _name=name, _original=original, **kw):
                with self._lock:
                    self.counts[_name] += 1
                return _original(dm, *a, **kw)
            monkeypatch.setattr(DreamMover, name, spy)

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


def takeover_races(store, races: int = 200, claimants: int = 4) -> list[int]:
    """`races` times: a crashed run's expired lease, and `claimants` threads taking it over at once.

    Returns the number of holders each race ended with (each must be exactly 1). Claimants start
    together behind a barrier, so they really race for the same version of the lease.
    """
    from dreammover_tasks import leases

    counts = []
    for race in range(races):
        pair = f"race-{race}"
        assert leases.acquire(store, pair, "crashed", ttl=-1) is None  # taken, and already expired
        barrier, won = threading.Barrier(claimants), []

        def claim(holder: str) -> None:
            barrier.wait()
            if leases.acquire(store, pair, holder, 60) is None:
                won.append(holder)
        threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(claimants)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        counts.append(len(won))
    return counts


def concurrent_writes(store, threads: int = 8, rounds: int = 100) -> list[str]:
    """`threads` writers each write one key `rounds` times at once; returns the errors (must be none)."""
    errors: list[str] = []
    barrier = threading.Barrier(threads)

    def write(i: int) -> None:
        barrier.wait()
        for r in range(rounds):
            try:
                store.write_bytes("same/key.bin", f"{i}-{r}".encode() * 64)
            except Exception as err:  # noqa: BLE001 - counted, that is the measurement
                errors.append(f"{type(err).__name__}: {err}")
    workers = [threading.Thread(target=write, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors
