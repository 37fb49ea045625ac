"""The studio's svd backend without a browser: an svd job's clip, presets on it, refusals before queueing, events."""
import json
import time

import pytest

from dreammover.events import Cancelled
from dreammover.sample import sample_pair
from dreammover.video import read_video

pytest.importorskip("multipart")

from dreammover_studio.limits import StudioLimits  # noqa: E402
from test_studio_kit import studio_client, submit as _submit, wait as _wait  # noqa: E402

FAST_SVD = json.dumps(dict(num_inference_steps=2, noise_injection_steps=1, guidance_scale=1.0))


@pytest.fixture()
def svd_studio(tiny_dm, tmp_path):
    # steps up to 500: the cancel test needs a job long enough to be caught sampling
    with studio_client(tiny_dm, tmp_path / "home", svd_model="tiny-svd", limits=StudioLimits(steps=500)) as s:
        yield s


def test_svd_job_gives_n_plus_2_frames_and_presets_apply(svd_studio, tmp_path):
    client, runner = svd_studio
    assert runner.backend.svd.interpolator is None  # lazily loaded: nothing before the first svd job
    r = _submit(client, backend="svd", frames="3", size="64", settings=FAST_SVD)
    assert r.status_code == 201, r.text
    assert r.json()["settings"]["backend"] == "svd" and r.json()["settings"]["num_frames"] == 3
    done = _wait(client, r.json()["id"])
    assert done["state"] == "done", done["error"]
    assert done["frames"] == 3 + 2 and done["unet_evals"]["denoise"] > 0   # docs/backends.md: N+2 frames
    assert set(done["seconds"]) >= {"encode", "denoise", "decode"}
    loaded = runner.backend.svd.interpolator
    assert loaded is not None
    (tmp_path / "c.mp4").write_bytes(client.get(f"/jobs/{done['id']}/clip").content)
    clip = read_video(tmp_path / "c.mp4")
    assert len(clip) == 5 and clip[0].shape[:2] == (64, 64)  # raw preset: the working frame, 16:9 at 64 -> 64x64
    # the same settings with a boomerang preset re-encode the cached frames: 2(N+2)-1 frames, no new model work
    calls = []
    hook = loaded.components.unet.register_forward_hook(lambda *a: calls.append(1))
    again = client.post(f"/jobs/{done['id']}/again", data={"preset": "raw", "settings": json.dumps(
        {**json.loads(FAST_SVD), "clip": {"loop": "boomerang"}})})
    assert again.status_code == 201, again.text
    redo = _wait(client, again.json()["id"])
    assert redo["state"] == "done" and redo["settings"] == done["settings"] and redo["unet_evals"] == {}
    (tmp_path / "b.mp4").write_bytes(client.get(f"/jobs/{redo['id']}/clip").content)
    assert len(read_video(tmp_path / "b.mp4")) == 2 * 5 - 1
    hook.remove()
    assert runner.backend.svd.interpolator is loaded and calls == []  # kept resident; no UNet work to re-encode
    # a dreammover job still runs on the same studio
    dm = _wait(client, _submit(client, frames="2").json()["id"])
    assert dm["state"] == "done" and dm["frames"] == 4 and dm["settings"]["backend"] == "dreammover"


def test_bad_backend_requests_are_refused_before_queueing(tiny_dm, svd_studio, tmp_path):
    client, _ = svd_studio
    r = _submit(client, backend="sora")
    assert r.status_code == 400 and r.json()["detail"].startswith("backend: unknown 'sora'")
    r = _submit(client, backend="svd", prompt="a cat")
    assert r.status_code == 400 and "no prompt" in r.json()["detail"]
    r = _submit(client, backend="svd", settings=json.dumps({"lora_steps": 3}))  # a DreamMover-only field
    assert r.status_code == 400 and "lora_steps" in r.json()["detail"]
    r = _submit(client, backend="svd", settings=json.dumps({"backward_weights": "/etc/passwd"}))
    assert r.status_code == 400 and "backward_weights" in r.json()["detail"]
    assert client.get("/jobs").json() == []
    with studio_client(tiny_dm, tmp_path / "plain") as (plain, _):  # no --svd-model
        r = _submit(plain, backend="svd")
        assert r.status_code == 400 and "--svd-model" in r.json()["detail"]
        assert plain.get("/jobs").json() == []
        assert "SVD = false" in plain.get("/").text


def test_svd_backend_reports_stages_in_order_and_cancels(dreammover_home):
    from dreammover.backends import load_backend
    from dreammover.backends.svd_config import SVDKeyframeConfig

    svd = load_backend("svd", "tiny-svd", device="cpu", dtype="fp32")
    cfg = SVDKeyframeConfig(num_frames=3, size=64, num_inference_steps=3, noise_injection_steps=1,
                            guidance_scale=1.0, decode_chunk=2)
    pair = sample_pair(64)
    seen = []
    res = svd.interpolate(*pair, cfg, on_event=lambda ev: seen.append((ev.stage, ev.step, ev.total)))
    assert len(res.frames) == 5
    assert seen == [("encode", 0, 1), ("encode", 1, 1), ("denoise", 1, 3), ("denoise", 2, 3), ("denoise", 3, 3),
                    ("decode", 2, 5), ("decode", 4, 5), ("decode", 5, 5)]

    def stop(ev):
        seen.append(ev.stage)
        if ev.stage == "denoise":
            raise Cancelled("stop")

    seen.clear()
    with pytest.raises(Cancelled):
        svd.interpolate(*pair, cfg, on_event=stop)
    assert seen == ["encode", "encode", "denoise"]  # stopped at the first step: no more sampling, no decode


def test_cancel_a_running_svd_job(svd_studio):
    client, runner = svd_studio
    slow = json.dumps(dict(num_inference_steps=500, noise_injection_steps=0, guidance_scale=1.0))
    job = _submit(client, backend="svd", frames="1", size="64", settings=slow).json()
    end = time.time() + 60
    while client.get(f"/jobs/{job['id']}").json()["stage"] != "denoise":  # running, inside the sampling loop
        assert time.time() < end, "the svd job never reached denoise"
        time.sleep(0.02)
    assert client.delete(f"/jobs/{job['id']}").status_code == 200
    gone = _wait(client, job["id"])
    assert gone["state"] == "cancelled" and gone["frames"] is None  # stopped at a step, long before 500
