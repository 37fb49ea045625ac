"""The studio's Restyle action without a browser: a restyle job of a finished clip, its checks, sign-in and Origin."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("multipart")

from dreammover.video import read_video  # noqa: E402
from dreammover_studio.limits import StudioLimits  # noqa: E402
from test_studio_kit import AUTH, studio_client, submit, wait  # noqa: E402

STEPS = 40  # the test studio's limit (--restyle-steps)


@pytest.fixture(scope="module")
def studio(tiny_dm, tmp_path_factory):
    from dreammover_studio.auth import UserStore

    home = tmp_path_factory.mktemp("restyle-studio")
    users = UserStore(home)
    with studio_client(tiny_dm, home, limits=StudioLimits(restyle_steps=STEPS), users=users,
                       restyle_model="tiny-t2v") as s:
        client, _ = s
        done = wait(client, submit(client, frames="2").json()["id"])
        assert done["state"] == "done", done["error"]
        yield client, s[1], done


def jobs(client) -> int:
    return len(client.get("/jobs").json())


def restyle(client, job_id: str, headers=None, **form):
    return client.post(f"/jobs/{job_id}/restyle", data=form, headers=headers)


def test_first_frame_is_the_clips_first_frame(studio):
    client, runner, done = studio
    r = client.get(f"/jobs/{done['id']}/first-frame")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    frame = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    first = sorted((runner.store.folder(done["id"]) / "frames").glob("*.png"))[0]
    assert np.array_equal(frame, np.asarray(Image.open(first).convert("RGB")))


def test_a_restyle_job_runs_through_the_queue_with_progress_and_downloads(studio, tmp_path):
    client, runner, done = studio
    r = restyle(client, done["id"], target_prompt="an oil painting", box="8,4,32,40", steps="2")
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["source"] == done["id"] and job["state"] in ("queued", "running", "done")
    assert job["settings"] == {"backend": "restyle", "target_prompt": "an oil painting", "source_prompt": "",
                               "box": [8, 4, 32, 40], "steps": 2, "model": "tiny-t2v"}
    seen, end = set(), time.time() + 120
    while (cur := client.get(f"/jobs/{job['id']}").json())["state"] not in ("done", "failed", "cancelled"):
        seen.add(cur["stage"])
        assert time.time() < end, cur
        time.sleep(0.01)
    assert cur["state"] == "done", cur["error"]
    assert cur["frames"] == done["frames"] == 4 and cur["unet_evals"] == {}  # N+2 frames in, as many out
    assert seen <= {"queued", "restyle", "encoding"}
    (tmp_path / "r.mp4").write_bytes(client.get(f"/jobs/{job['id']}/clip").content)
    (tmp_path / "o.mp4").write_bytes(client.get(f"/jobs/{done['id']}/clip").content)
    edited, original = read_video(tmp_path / "r.mp4"), read_video(tmp_path / "o.mp4")
    assert len(edited) == len(original) == 4 and edited[0].shape == original[0].shape
    assert client.get(f"/jobs/{job['id']}/frames").content[:2] == b"PK"
    # the parent is untouched, and a restyled clip is not "rendered again" (its settings are not a method's)
    assert client.get(f"/jobs/{done['id']}").json()["state"] == "done"
    again = client.post(f"/jobs/{job['id']}/again", data={"preset": "raw"})
    assert again.status_code == 400 and "restyle its source job again" in again.json()["detail"]


def test_bad_requests_are_refused_in_one_line_before_queueing(studio):
    client, _, done = studio
    before = jobs(client)
    for prompt in ("", "   "):
        r = restyle(client, done["id"], target_prompt=prompt)
        assert r.status_code == 422 and r.json()["detail"] == \
            "target prompt is empty: say what the clip should look like", r.text
    r = client.post(f"/jobs/{done['id']}/restyle", data={})  # no field at all: the same answer
    assert r.status_code == 422 and "\n" not in r.json()["detail"] and "target prompt" in r.json()["detail"]
    r = restyle(client, done["id"], target_prompt="a cat", steps=str(STEPS + 1))
    assert r.status_code == 400 and r.json()["detail"] == f"steps: {STEPS + 1} is more than the limit of {STEPS}"
    r = restyle(client, done["id"], target_prompt="a cat", steps="0")
    assert r.status_code == 400 and r.json()["detail"].startswith("steps: 0 is less than")
    for box in ("60,0,8,8", "0,0,65,10", "-1,0,4,4"):  # the frame is 64x64
        r = restyle(client, done["id"], target_prompt="a cat", box=box)
        assert r.status_code == 400 and r.json()["detail"] == f"box: {box} reaches outside the 64x64 frame", r.text
    r = restyle(client, done["id"], target_prompt="a cat", box="1,2,3")
    assert r.status_code == 400 and "x,y,w,h" in r.json()["detail"]
    r = restyle(client, done["id"], target_prompt="x" * 1001)
    assert r.status_code == 400 and r.json()["detail"].startswith("target_prompt: 1001 characters")
    assert jobs(client) == before


def test_a_job_that_is_not_finished_cannot_be_restyled(studio):
    client, runner, done = studio
    busy = submit(client, frames="64").json()  # queued or running now
    try:
        r = restyle(client, busy["id"], target_prompt="a cat")
        assert r.status_code == 409 and "only a finished job can be restyled" in r.json()["detail"]
        assert client.get(f"/jobs/{busy['id']}/first-frame").status_code == 409
    finally:
        client.delete(f"/jobs/{busy['id']}")
    assert wait(client, busy["id"])["state"] == "cancelled"
    r = restyle(client, busy["id"], target_prompt="a cat")
    assert r.status_code == 409 and "is cancelled" in r.json()["detail"]


def test_sign_in_ownership_and_origin_rules(studio, tmp_path):
    client, runner, done = studio
    anon = {"Authorization": ""}
    assert restyle(client, done["id"], headers=anon, target_prompt="a cat").status_code == 401
    assert client.get(f"/jobs/{done['id']}/first-frame", headers=anon).status_code == 401
    stranger = runner.store.create({"backend": "dreammover"}, {}, owner="someone-else")
    from dreammover_studio.auth import UserStore

    token = UserStore(runner.store.home).add("bob", False)  # a user; the fixture's jobs are the admin's
    bob = {"Authorization": f"Bearer {token}"}
    r = restyle(client, stranger, headers=bob, target_prompt="a cat")
    assert r.status_code == 404 and client.get(f"/jobs/{done['id']}/first-frame", headers=bob).status_code == 404
    before = jobs(client)
    r = restyle(client, done["id"], headers={**AUTH, "Origin": "https://evil.example"}, target_prompt="a cat")
    assert r.status_code == 403 and jobs(client) == before


def test_cancel_a_running_restyle_job(studio):
    client, _, done = studio
    job = restyle(client, done["id"], target_prompt="a watercolour", steps=str(STEPS)).json()
    end = time.time() + 60
    while (cur := client.get(f"/jobs/{job['id']}").json())["stage"] != "restyle" or cur["progress"] <= 0:
        assert time.time() < end and cur["state"] != "done", cur
        time.sleep(0.01)
    assert client.delete(f"/jobs/{job['id']}").status_code == 200
    gone = wait(client, job["id"])
    assert gone["state"] == "cancelled" and gone["frames"] is None


def test_a_studio_on_a_prefect_deployment_refuses_restyle_in_words(tmp_path):
    from fastapi.testclient import TestClient

    from dreammover_studio.auth import Auth
    from dreammover_studio.cli import build

    class Remote:  # what build() takes for a PrefectBackend: anything with run()
        def run(self, folder, config, report):
            raise AssertionError("nothing is run")

    app, runner = build(Remote(), tmp_path / "home", auth=Auth(None, "tok"), allowed_hosts=["testserver"])
    try:
        job = runner.store.create({"backend": "dreammover"}, {"name": "raw"}, owner="admin")
        runner.store.update(job, state="done")
        with TestClient(app, headers={"Authorization": "Bearer tok"}) as client:
            r = restyle(client, job, target_prompt="a cat")
            assert r.status_code == 501 and "Prefect deployment" in r.json()["detail"]
            assert "RESTYLE = false" in client.get("/").text
    finally:
        runner.stop()
    assert json.loads(json.dumps(r.json()))["detail"].count("\n") == 0
