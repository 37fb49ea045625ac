"""The studio's job API without a browser: queue, progress, preview, cancel, limits, re-render without UNet work."""
import io
import json
import zipfile

import numpy as np
import pytest

from dreammover.sample import sample_pair
from dreammover.video import read_video

pytest.importorskip("multipart")

from dreammover_studio.limits import StudioLimits  # noqa: E402
from test_studio_kit import png as _png, studio_client, submit as _submit, wait as _wait  # noqa: E402


@pytest.fixture()
def studio(tiny_dm, tmp_path):
    with studio_client(tiny_dm, tmp_path / "home", limits=StudioLimits(upload_bytes=200_000, pixels=300_000)) as s:
        yield s


def test_job_runs_with_progress_preview_and_clip(studio, tmp_path):
    client, runner = studio
    r = _submit(client, frames="2", formats="gif")
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and job["settings"]["num_frames"] == 2
    seen, progress = set(), []
    events = client.get(f"/jobs/{job['id']}/events")  # SSE: streams until the job is final
    for line in events.text.splitlines():
        if line.startswith("data: "):
            seen.add((d := json.loads(line[6:]))["stage"])
            progress.append(d["progress"])
    # The stream samples the status every 0.25 s, so short stages may fall between two samples
    # (a 2-frame job's inversion and denoising can); the LoRA fit never does.
    assert "done" in seen and seen - {"queued", "done"}, seen
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(set(progress)) >= 2
    done = client.get(f"/jobs/{job['id']}").json()
    assert done["state"] == "done" and done["frames"] == 4 and done["duration"] > 0
    assert done["unet_evals"]["denoise"] > 0 and done["previews"] >= 1
    assert client.get(f"/jobs/{job['id']}/preview").headers["content-type"] == "image/jpeg"
    clip = client.get(f"/jobs/{job['id']}/clip")
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    (tmp_path / "c.mp4").write_bytes(clip.content)
    assert len(read_video(tmp_path / "c.mp4")) == 4
    gif = client.get(f"/jobs/{job['id']}/clip?format=gif")  # encoded with the job, as asked: served as it is
    assert gif.content[:3] == b"GIF" and len(gif.content) == done["outputs"]["gif"]["bytes"]
    assert set(done["outputs"]) == {"mp4", "gif"} and done["outputs"]["gif"]["estimate_bytes"] > 0
    webm = client.get(f"/jobs/{job['id']}/clip?format=webm")  # not asked for: no encoding on a click
    assert webm.status_code == 404 and "render it again with webm" in webm.json()["detail"]
    frames_zip = zipfile.ZipFile(io.BytesIO(client.get(f"/jobs/{job['id']}/frames").content))  # streamed
    assert frames_zip.testzip() is None and frames_zip.namelist() == [f"{i:04d}.png" for i in range(4)]
    hist = client.get("/jobs").json()
    assert hist[0]["id"] == job["id"] and hist[0]["settings"]["size"] == 64
    assert client.get(hist[0]["links"]["thumbs"][2]).status_code == 200

    # render again with a boomerang preset: re-encode only, 2(N+2)-1 frames, not one UNet call
    calls = runner.backend.unet_calls
    again = client.post(f"/jobs/{job['id']}/again", data={"preset": "gif-loop"}).json()
    assert _wait(client, again["id"])["state"] == "done"
    assert runner.backend.unet_calls == calls
    boom = client.get(f"/jobs/{again['id']}/clip")
    (tmp_path / "b.gif").write_bytes(boom.content)
    assert len(read_video(tmp_path / "b.gif")) == 2 * (2 + 2) - 1

    # a change of N reuses the cached LoRA and inversion/flow: only denoising and decoding run
    more = client.post(f"/jobs/{job['id']}/again", data={"preset": "raw", "frames": "3"}).json()
    fin = _wait(client, more["id"])
    assert fin["state"] == "done" and fin["frames"] == 5
    assert set(fin["unet_evals"]) == {"denoise"}


def test_bad_uploads_are_refused_before_queueing(studio):
    client, _ = studio
    a, _ = sample_pair(64)
    r = client.post("/jobs", files={"image0": ("a.png", _png(a), "image/png"),
                                    "image1": ("notes.txt", b"hello, not a photo", "text/plain")})
    assert r.status_code == 400 and r.json()["detail"].startswith("photo 2 (notes.txt) is not an image")
    big = np.zeros((600, 600, 3), np.uint8)  # 360k pixels > 300k limit
    r = client.post("/jobs", files={"image0": ("big.png", _png(big), "image/png"),
                                    "image1": ("a.png", _png(a), "image/png")})
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)  # ~270 kB > 200 kB
    r = client.post("/jobs", files={"image0": ("n.png", _png(noise), "image/png"),
                                    "image1": ("a.png", _png(a), "image/png")})
    assert r.status_code == 413 and "photo 1" in r.json()["detail"]
    assert _submit(client, frames="500").json()["detail"] == "num_frames: 500 is more than the limit of 64"
    assert _submit(client, preset="tiktok").json()["detail"].startswith("preset: unknown 'tiktok'")
    assert "num_frames" in _submit(client, settings='{"num_frames": 0}').json()["detail"]
    assert client.post("/jobs", data={"preset": "raw"}).status_code == 422
    assert client.get("/jobs").json() == []  # nothing was queued


def test_cancel_a_running_job_frees_the_queue(studio):
    client, runner = studio
    slow = json.dumps({"lora_steps": 200})
    first = _submit(client, settings=slow).json()
    _wait(client, first["id"], states=("running",))
    second = _submit(client).json()
    assert client.get(f"/jobs/{second['id']}").json()["position"] == 1  # queued behind the running one
    assert client.delete(f"/jobs/{first['id']}").status_code == 200
    assert _wait(client, first["id"])["state"] == "cancelled"
    assert _wait(client, second["id"])["state"] == "done"  # the device went on to the next job
    assert client.delete(f"/jobs/{second['id']}").status_code == 409


def test_openapi_and_docs(studio):
    client, _ = studio
    spec = client.get("/openapi.json").json()
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/events", "/jobs/{job_id}/preview"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    assert 'id="f0"' in client.get("/").text


def test_heavy_crop_and_big_upscale_are_warned_as_the_cli_does(studio):
    client, _ = studio
    pano, square = np.zeros((64, 256, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    files = {"image0": ("square.png", _png(square), "image/png"), "image1": ("pano.png", _png(pano), "image/png")}
    job = client.post("/jobs", files=files, data={"preset": "reel"}).json()
    crop = [w for w in job["warnings"] if w.startswith("photo 2 is 256x64: 'cover' keeps only its centre")]
    assert crop and "25%" in crop[0]
    up = [w for w in job["warnings"] if w.startswith("the clip is upscaled")]
    assert up == ["the clip is upscaled 30x from the 64x64 render to 1080x1920: it will look soft (use a larger size)"]
    plain = _submit(client).json()  # the same size for a raw clip: nothing to say
    assert plain["warnings"] == []
    for j in (job, plain):
        client.delete(f"/jobs/{j['id']}")
