"""Helpers the studio tests share (no tests here): an in-process studio signed in as admin, uploads, waiting."""
from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from dreammover.config import InterpolationConfig
from dreammover.sample import sample_pair

TOKEN = "test-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TINY = InterpolationConfig(size=64, num_frames=2, lora_steps=2, num_inference_steps=10, inversion_steps=4,
                           feature_step=2)


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@contextmanager
def studio_client(engine, home, config=TINY, limits=None, users=None, **build_kw):
    """(TestClient with the admin token, runner) over `build`; `users` a UserStore to sign in from as well."""
    from fastapi.testclient import TestClient

    from dreammover_studio.auth import Auth
    from dreammover_studio.cli import build

    app, runner = build(engine, home, config, limits, auth=Auth(users, TOKEN), allowed_hosts=["testserver"],
                        **build_kw)
    try:
        with TestClient(app, headers=AUTH) as client:
            yield client, runner
    finally:
        runner.stop()


def submit(client, headers=None, files=None, **form):
    a, b = sample_pair(64)
    files = files or {"image0": ("a.png", png(a), "image/png"), "image1": ("b.png", png(b), "image/png")}
    return client.post("/jobs", files=files, data=form, headers=headers)


def wait(client, job_id, states=("done", "failed", "cancelled"), timeout=120, headers=None):
    end, job = time.time() + timeout, None
    while time.time() < end:
        job = client.get(f"/jobs/{job_id}", headers=headers).json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck in {job}")


ROOT = Path(__file__).resolve().parents[1]


class Server:
    """`python -m dreammover_studio studio` on a free port, as a user starts it, signed in with DREAMMOVER_STUDIO_TOKEN;
    restartable on the same home. `env` adds to the environment (e.g. TMPDIR)."""

    def __init__(self, model: Path, home: Path, config: Path | None = None, env: dict | None = None, *args):
        self.model, self.home, self.config, self.extra_env, self.args, self.proc = model, home, config, env, args, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "DREAMMOVER_STUDIO_TOKEN": TOKEN, **(self.extra_env or {})}
        self.log = open(self.home.parent / "server.log", "ab")
        cmd = [sys.executable, "-m", "studio", "studio", "--model", str(self.model), "--device", "cpu",
               "--home", str(self.home), "--port", str(self.port), *self.args]
        if self.config:
            cmd += ["--config", str(self.config)]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log)
        end = time.time() + 120
        while time.time() < end:
            assert self.proc.poll() is None, (self.home.parent / "server.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("studio server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()

    def get(self, path: str, token: str | None = TOKEN):
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
        return urllib.request.urlopen(req, timeout=30)

    def jobs(self) -> list[dict]:
        return json.load(self.get("/jobs"))
