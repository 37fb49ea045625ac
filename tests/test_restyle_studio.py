"""The studio's Restyle action without a browser: a restyle job of a finished clip, its checks, sign-in and Origin."""
from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("multipart")
pytest.importorskip("dreammover.restyle", reason="the restyle library (branch restyle-core) is not merged here")

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
            assert "\n" not in r.json()["detail"] and "RESTYLE = false" in client.get("/").text  # no button
    finally:
        runner.stop()


def test_restyle_in_a_browser_box_dragged_result_beside_the_original(tiny_model_dir, tmp_path):
    """Headless Chromium: a finished tiny job, Restyle, drag a box on its first frame, submit, both clips play."""
    import os
    import shutil

    from dreammover.sample import write_sample_pair
    from test_studio_kit import Server

    chromium, driver_exe = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not (chromium and driver_exe):
        if os.environ.get("STUDIO_REQUIRE_BROWSER") == "1":
            pytest.fail("STUDIO_REQUIRE_BROWSER=1 but no chromium/chromedriver", pytrace=False)
        pytest.skip("no chromium/chromedriver: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    (tmp_path / "tiny.json").write_text(json.dumps(dict(size=64, num_frames=2, lora_steps=2, num_inference_steps=4,
                                                         inversion_steps=2, feature_step=1)))
    a, b = write_sample_pair(tmp_path / "photos", 64)
    server = Server(tiny_model_dir, tmp_path / "home", tmp_path / "tiny.json", None,
                    "--restyle-model", "tiny-t2v", "--restyle-steps", "4").start()
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    drv = webdriver.Chrome(service=Service(driver_exe), options=opts)

    def until(fn, timeout=120):  # the page rebuilds parts of itself: a stale element means look again
        return WebDriverWait(drv, timeout, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(fn)

    playing = "const v = document.getElementById(arguments[0]); return v.readyState >= 1 && v.duration > 0"
    try:
        from test_studio_kit import TOKEN

        drv.get(server.url + "/")
        drv.find_element(By.ID, "token").send_keys(TOKEN)
        drv.find_element(By.ID, "signin-go").click()
        until(lambda d: d.find_elements(By.ID, "f0"))
        drv.find_element(By.ID, "f0").send_keys(str(a))
        drv.find_element(By.ID, "f1").send_keys(str(b))
        drv.find_element(By.ID, "go").click()
        until(lambda d: d.execute_script(playing, "clip"))
        parent = server.jobs()[0]
        drv.find_element(By.ID, "restyle-open").click()
        frame = drv.find_element(By.ID, "rs-frame")
        until(lambda d: d.execute_script("return arguments[0].naturalWidth", frame) == 64)
        drv.execute_script("arguments[0].scrollIntoView({block: 'center'})", frame)
        w, h = frame.size["width"], frame.size["height"]
        # from the frame's top-left quarter point to its bottom-right quarter point: the middle half of the frame
        ActionChains(drv).move_to_element_with_offset(frame, -w // 4, -h // 4).click_and_hold() \
            .move_by_offset(w // 2, h // 2).release().perform()
        box = drv.execute_script("return rsBox")  # the middle half of the 64x64 frame, to a pixel (sub-pixel layout)
        assert np.abs(np.array(box) - [16, 16, 32, 32]).max() <= 1, box
        assert drv.find_element(By.ID, "rs-boxtext").text.startswith(f"Box: x {box[0]}, y {box[1]}, {box[2]}x{box[3]}")
        assert drv.find_element(By.ID, "rs-box").is_displayed()
        drv.find_element(By.ID, "rs-target").send_keys("an oil painting <b>of</b> the scene")
        steps = drv.find_element(By.ID, "rs-steps")
        steps.clear()
        steps.send_keys("2")
        drv.find_element(By.ID, "rs-go").click()
        until(lambda d: "compare" in d.find_element(By.ID, "result").get_attribute("class")
              and d.execute_script(playing, "orig") and d.execute_script(playing, "clip"))
        assert drv.find_element(By.ID, "cap-orig").is_displayed() and drv.find_element(By.ID, "cap-new").is_displayed()
        left, right = (drv.find_element(By.ID, i).rect for i in ("orig", "clip"))
        assert left["x"] + left["width"] <= right["x"] + 1 and abs(left["y"] - right["y"]) < 2  # side by side
        assert drv.find_element(By.ID, "dl-mp4").get_attribute("href").endswith("/clip?format=mp4")
        assert drv.find_element(By.ID, "rs-msg").text == "" and drv.find_element(By.ID, "jobmsg").text == ""
        job = server.jobs()[0]
        assert job["state"] == "done" and job["source"] == parent["id"] and job["frames"] == parent["frames"]
        assert job["settings"]["box"] == box and job["settings"]["steps"] == 2
        assert job["settings"]["target_prompt"] == "an oil painting <b>of</b> the scene"
        row = until(lambda d: d.find_element(By.CSS_SELECTOR, f"li.hist[data-id='{job['id']}']"))
        assert "<b>of</b>" in row.text and "render again" not in row.text  # shown as text; no re-render menu
    finally:
        drv.quit()
        server.stop()


def test_an_edit_the_preflight_says_cannot_fit_is_refused_with_its_estimate(studio, monkeypatch):
    import dreammover_studio.settings as studio_settings

    client, runner, done = studio
    engine = runner.backend.restyle
    if engine.model is None:  # the model is loaded by the first restyle job; the check needs it loaded
        monkeypatch.setattr(engine, "model", engine.load())
    seen = []  # a device of 1 MiB: the library's real estimate cannot fit in it
    monkeypatch.setattr(studio_settings, "_total_memory", lambda free, model: seen.append(model) or 1 << 20)
    before = jobs(client)
    r = restyle(client, done["id"], target_prompt="a cat", steps="2")
    detail = r.json()["detail"]
    assert r.status_code == 400 and detail.startswith("this restyle job does not fit in memory here: "), detail
    assert "2 iterations" in detail and "0.0 GiB available" in detail and "\n" not in detail, detail
    assert seen == [engine.model] and jobs(client) == before


def test_a_model_that_cannot_load_fails_the_job_in_words_and_the_next_one_tries_again(studio, monkeypatch):
    client, runner, done = studio
    engine = runner.backend.restyle
    monkeypatch.setattr(engine, "model", None)
    monkeypatch.setattr(engine, "model_spec", "/nonexistent/t2v-folder")
    failed = wait(client, restyle(client, done["id"], target_prompt="a cat", steps="1").json()["id"])
    assert failed["state"] == "failed" and "ModelLoadError" in failed["error"] and "/nonexistent/t2v-folder" in \
        failed["error"] and "\n" not in failed["error"]
    monkeypatch.setattr(engine, "model_spec", "tiny-t2v")  # fixed: the next restyle job loads it and runs
    ok = wait(client, restyle(client, done["id"], target_prompt="a cat", steps="1").json()["id"])
    assert ok["state"] == "done", ok["error"]


def test_the_restyle_model_is_chosen_as_the_model_is():
    from dreammover.restyle import DEFAULT_T2V
    from dreammover_studio.cli import restyle_model_for

    assert restyle_model_for(None, "tiny", None) == "tiny-t2v"
    assert restyle_model_for(None, "stable-diffusion-v1-5/stable-diffusion-v1-5", None) == DEFAULT_T2V
    assert restyle_model_for("t2v-random", "tiny", None) == "t2v-random"
    assert restyle_model_for("None", "tiny", None) is None
    assert restyle_model_for("tiny-t2v", "tiny", "interpolate-pair/gpu") is None  # Prefect: no in-process model
