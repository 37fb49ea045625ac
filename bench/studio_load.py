"""Load benchmark of the studio (issue #16): 30 open event streams and 10 submits while a job runs.

Starts `python -m dreammover_studio studio --model tiny` on a free port (signed in with DREAMMOVER_STUDIO_TOKEN), queues
one long job, opens 30 server-sent-event streams on it, sends 10 submits of two 2-megapixel photos each (image
checks, thumbnails and estimates: the CPU work that must stay off the event loop), and meanwhile measures
`GET /jobs/{id}` latency. Prints p50/p95/p99/max; the figure goes in docs/studio.md (not a timed test).

    HF_HUB_OFFLINE=1 PYTHONPATH=. python bench/studio_load.py [--streams 30] [--submits 10] [--seconds 20]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _photo(side: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (side // 16, side // 16, 3), np.uint8)  # smooth enough to compress like a photo
    buf = io.BytesIO()
    Image.fromarray(small).resize((side, side), Image.BILINEAR).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (name, data) in files.items():
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{name}"\r\n'
                  f"Content-Type: image/jpeg\r\n\r\n".encode() + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, port: int, token: str):
        self.port, self.auth = port, {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request(method, path, body=body, headers={**self.auth, **(headers or {})})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def submit(self, photos: tuple[bytes, bytes], settings: dict, frames: int = 2) -> tuple[int, dict]:
        body, kind = _multipart({"settings": json.dumps(settings), "frames": str(frames)},
                                {"image0": ("a.jpg", photos[0]), "image1": ("b.jpg", photos[1])})
        status, data = self.request("POST", "/jobs", body, {"Content-Type": kind})
        return status, json.loads(data)


def _stream(port: int, token: str, job_id: str, stop: threading.Event, counts: list[int], i: int) -> None:
    """One open event stream, read until the job ends or the bench stops."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", f"/jobs/{job_id}/events", headers={"Authorization": f"Bearer {token}"})
    r = conn.getresponse()
    while not stop.is_set():
        line = r.fp.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            counts[i] += 1
    conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--streams", type=int, default=30)
    ap.add_argument("--submits", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--photo-side", type=int, default=1600, help="side of the submitted photos (px)")
    args = ap.parse_args()

    token, port = secrets.token_urlsafe(24), _port()
    home = Path(tempfile.mkdtemp(prefix="studio-load-"))
    (home / "cfg.json").write_text(json.dumps(dict(size=64, num_frames=2, num_inference_steps=10,
                                                   inversion_steps=4, feature_step=2, lora_steps=2)))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "DREAMMOVER_STUDIO_TOKEN": token, "HF_HUB_OFFLINE": "1"}
    log = open(home / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "studio", "studio", "--model", args.model, "--device", "cpu",
                               "--home", str(home / "studio"), "--config", str(home / "cfg.json"),
                               "--port", str(port)], env=env, stdout=log, stderr=log)
    client = Client(port, token)
    try:
        end = time.time() + 300
        while True:
            try:
                if client.request("GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > end:
                raise SystemExit(f"the studio did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        photos = (_photo(args.photo_side, 0), _photo(args.photo_side, 1))
        status, job = client.submit(photos, {"lora_steps": 400}, frames=16)  # long enough to outlast the bench
        assert status == 201, job
        while json.loads(client.request("GET", f"/jobs/{job['id']}")[1])["state"] != "running":
            time.sleep(0.1)

        stop, counts = threading.Event(), [0] * args.streams
        streams = [threading.Thread(target=_stream, args=(port, token, job["id"], stop, counts, i), daemon=True)
                   for i in range(args.streams)]
        for t in streams:
            t.start()
        submitted: list[tuple[int, float]] = []

        def submit_one() -> None:
            t0 = time.perf_counter()
            s, body = client.submit(photos, {})
            submitted.append((s, time.perf_counter() - t0))
            if s == 201:
                client.request("DELETE", f"/jobs/{body['id']}")  # only the request is measured, not the job

        time.sleep(1.0)  # every stream open
        submits = [threading.Thread(target=submit_one) for _ in range(args.submits)]
        latencies: list[float] = []
        started = time.perf_counter()
        for t in submits:
            t.start()
        while time.perf_counter() - started < args.seconds:
            t0 = time.perf_counter()
            s, _ = client.request("GET", f"/jobs/{job['id']}")
            latencies.append(time.perf_counter() - t0)
            assert s == 200, s
            time.sleep(0.02)
        for t in submits:
            t.join()
        stop.set()
        client.request("DELETE", f"/jobs/{job['id']}")
        q = statistics.quantiles(latencies, n=100)
        ms = lambda v: f"{1000 * v:.1f} ms"  # noqa: E731
        print(f"GET /jobs/{{id}} with {args.streams} event streams open and {args.submits} submits "
              f"({args.photo_side}x{args.photo_side} photos) while a job runs: {len(latencies)} requests in "
              f"{args.seconds:g} s")
        print(f"  p50 {ms(q[49])}  p95 {ms(q[94])}  p99 {ms(q[98])}  max {ms(max(latencies))}")
        if submitted:
            print(f"  submits: {sorted(s for s, _ in submitted)}; each took {ms(min(d for _, d in submitted))} to "
                  f"{ms(max(d for _, d in submitted))}")
        print(f"  events received per stream: min {min(counts)}, max {max(counts)}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    finally:
        server.terminate()
        server.wait(30)
        log.close()


if __name__ == "__main__":
    main()
