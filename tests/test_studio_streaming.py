"""Streaming clips, cancel in every stage and crash-retry-once (issue #16): the streamed frames equal the library's
build_clip; a 60 s x 120 fps blend re-render stays far under 300 MB; cancel lands during encoding; a job that
kills the process is retried once after a restart, then failed with the reason; a clean stop is no crash."""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("multipart")

from dreammover.presets import PRESETS, build_clip  # noqa: E402
from dreammover_studio.encoding import Output, clip_plan, produce  # noqa: E402
from dreammover_studio.store import JobStore  # noqa: E402
from test_studio_kit import ROOT, TINY, studio_client, submit, wait  # noqa: E402

MiB = 1024 * 1024
LONG = {"clip": {"duration": 60, "fps": 120, "retime": "blend", "width": 256, "height": 256}}


@pytest.mark.parametrize("name", [*PRESETS, "custom"])
def test_streamed_frames_equal_build_clip(name):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 255, (48, 64, 3), np.uint8) for _ in range(6)]
    preset = PRESETS.get(name) or PRESETS["raw"].model_copy(update=dict(
        curve="ease-out", retime="blend", hold=2, loop="boomerang", duration=1.3, fps=24.0))
    if preset.width:  # same timing, small frames: the test is about order and blending, not 1080p
        preset = preset.model_copy(update={"width": preset.width // 20 * 2, "height": preset.height // 20 * 2})
    want = build_clip(frames, preset)
    got = list(produce(frames, clip_plan(len(frames), preset), preset))
    assert len(got) == len(want) == preset.frame_count(len(frames))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_gif_is_sized_for_a_gif_with_an_estimate():
    out = Output("gif", 34, PRESETS["reel"], (512, 320))
    d = out.describe()
    assert max(d["width"], d["height"]) == 480 and d["fps"] == 15 and d["frames"] == 45  # 3 s at 15 fps
    assert 1 * MiB < d["estimate_bytes"] < 10 * MiB  # the reel GIF was 92 MB


def _rss(pid) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _ffmpegs() -> list[int]:
    """This process's ffmpeg children (by name: a child between fork and exec still shows our own RSS)."""
    kids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            kids += [int(p) for p in (task / "children").read_text().split()
                     if "ffmpeg" in Path(f"/proc/{p}/comm").read_text()]
        except OSError:
            pass
    return kids


class Peak:
    """Peak RSS growth of this process and peak RSS of any child (ffmpeg), sampled every 10 ms."""

    def __init__(self):
        self.base, self.py, self.child, self._stop = _rss(os.getpid()), 0, 0, threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()

    def _watch(self):
        while not self._stop.is_set():
            self.py = max(self.py, _rss(os.getpid()) - self.base)
            self.child = max([self.child] + [_rss(k) for k in _ffmpegs()])
            time.sleep(0.01)

    def stop(self) -> "Peak":
        self._stop.set()
        self._t.join()
        return self


def test_long_blend_rerender_memory_and_cancel_during_encoding(tiny_dm, tmp_path):
    import cv2

    with studio_client(tiny_dm, tmp_path / "home") as (client, _):
        src = wait(client, submit(client, frames="2").json()["id"])
        assert src["state"] == "done", src
        peak = Peak()
        job = client.post(f"/jobs/{src['id']}/again", data={"settings": json.dumps(LONG)}).json()
        seen, fetched = [], []
        while (j := client.get(f"/jobs/{job['id']}").json())["state"] not in ("done", "failed", "cancelled"):
            seen.append((j["stage"], j["progress"], j["eta"]))
            if j["stage"] == "encoding" and len(fetched) < 3:  # no lock: another clip downloads meanwhile
                t = time.perf_counter()
                assert client.get(f"/jobs/{src['id']}/clip").status_code == 200
                fetched.append(time.perf_counter() - t)
            time.sleep(0.1)
        peak.stop()
        assert j["state"] == "done", j
        path = tmp_path / "home" / "jobs" / job["id"] / "clip.mp4"
        assert int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) == 7200
        assert peak.py + peak.child < 300 * MiB, (peak.py / MiB, peak.child / MiB)
        enc = [p for s, p, _ in seen if s == "encoding"]
        assert len(set(enc)) >= 5 and enc == sorted(enc)  # progress moves through encoding, never back
        assert any(e is not None for s, _, e in seen if s == "encoding")  # with an ETA
        assert len(fetched) == 3 and max(fetched) < 1.0, fetched
        print(f"7200-frame blend at 256x256: Python +{peak.py / MiB:.0f} MiB, ffmpeg {peak.child / MiB:.0f} MiB")

        # the same re-render, cancelled while it encodes: it stops, and no clip is left behind
        job = client.post(f"/jobs/{src['id']}/again", data={"settings": json.dumps(LONG)}).json()
        end = time.time() + 120
        while not ((j := client.get(f"/jobs/{job['id']}").json())["stage"] == "encoding" and j["progress"] > 0.05):
            assert time.time() < end and j["state"] not in ("done", "failed"), j
            time.sleep(0.02)
        assert client.delete(f"/jobs/{job['id']}").status_code == 200
        gone = wait(client, job["id"], timeout=10)
        assert gone["state"] == "cancelled" and gone["progress"] < 0.9
        left = [p.name for p in (tmp_path / "home" / "jobs" / job["id"]).iterdir() if p.name.startswith((".", "clip"))]
        assert left == []


CRASHER = textwrap.dedent("""
    import os, sys, time
    from dreammover_studio.runner import Runner
    from dreammover_studio.store import JobStore

    class Crash:  # a job that takes the whole process down (as an out-of-memory kill would)
        def run(self, folder, config, report):
            os._exit(3)

    Runner(JobStore(sys.argv[1]), Crash()).start()
    time.sleep(60)
""")


def test_a_job_that_crashes_the_process_is_retried_once_then_failed(tmp_path):
    store = JobStore(tmp_path / "home")
    job = store.create({"backend": "dreammover", **TINY.model_dump()}, PRESETS["raw"].model_dump(), owner="a")
    store.update(job, state="queued", stage="queued")
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for attempt in (1, 2):  # the first run and the one retry both kill the process
        proc = subprocess.run([sys.executable, str(script), str(tmp_path / "home")], env=env, timeout=120)
        assert proc.returncode == 3
        assert JobStore(tmp_path / "home").get(job)["attempts"] == attempt
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "home")], env=env)
    try:
        end = time.time() + 60
        while (j := JobStore(tmp_path / "home").get(job))["state"] != "failed":
            assert proc.poll() is None, "the job ran a third time"
            assert time.time() < end, j
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait()
    assert "stopped during this job 2 times" in j["error"] and "not retried again" in j["error"]


def test_a_clean_stop_requeues_the_running_job_without_counting_it(tiny_dm, tmp_path):
    slow = json.dumps({"lora_steps": 300})
    with studio_client(tiny_dm, tmp_path / "home") as (client, runner):
        job = submit(client, settings=slow).json()
        wait(client, job["id"], states=("running",))
        runner.stop()
        j = client.get(f"/jobs/{job['id']}").json()
    assert j["state"] == "queued" and j["attempts"] == 0


def test_sigterm_on_a_real_server_requeues_the_running_job_without_counting_it(tiny_model_dir, tmp_path):
    """uvicorn re-raises SIGTERM after its shutdown, so a `finally` after uvicorn.run never ran: the job stayed
    'running' and the next start counted a clean stop (docker stop, a deploy) as a crash."""
    import httpx

    from test_studio_kit import AUTH, Server

    srv = Server(tiny_model_dir, tmp_path / "home").start()
    try:
        with httpx.Client(base_url=srv.url, headers=AUTH, timeout=30) as client:
            job = submit(client, settings=json.dumps({"lora_steps": 300})).json()
            wait(client, job["id"], states=("running",))
    finally:
        srv.stop()  # SIGTERM, as docker stop sends
    assert srv.proc.returncode in (0, -15)
    j = JobStore(tmp_path / "home").get(job["id"])
    assert j["state"] == "queued" and j["attempts"] == 0, j
