"""Helpers the studio tests share (no tests here): an in-process studio signed in as admin, uploads, waiting."""
from __future__ import annotations

import io
import time
from contextlib import contextmanager

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

    from studio.auth import Auth
    from studio.cli import build

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
