"""The studio page in a real browser (Debian's headless chromium via selenium) against a real server process.

Skipped, with the reason, where chromium/chromedriver or selenium are missing; CI installs them
(`apt-get install -y chromium chromium-driver`). Set STUDIO_SCREENSHOTS=DIR to keep screenshots.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dreammover.sample import write_sample_pair

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
REQUIRED = os.environ.get("STUDIO_REQUIRE_BROWSER") == "1"  # CI: a missing browser is a failure, not a skip


def _skip(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"STUDIO_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


if not (CHROMIUM and DRIVER):
    _skip("no chromium/chromedriver: apt-get install -y chromium chromium-driver")
try:
    from selenium import webdriver
except ImportError:
    _skip("selenium is not installed (pip install selenium)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

TINY = dict(size=64, num_frames=2, lora_steps=6, num_inference_steps=10, inversion_steps=4, feature_step=2)


class Server:
    """`python -m studio` on a free port, as a user would start it; restartable on the same job folder."""

    def __init__(self, model: Path, home: Path, config: Path):
        self.model, self.home, self.config, self.proc = model, home, config, None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.log = open(self.home.parent / "server.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "studio", "studio", "--model", str(self.model),
                                      "--device", "cpu", "--home", str(self.home), "--config", str(self.config),
                                      "--port", str(self.port)], env=env, stdout=self.log, stderr=self.log)
        end = time.time() + 120
        while time.time() < end:
            assert self.proc.poll() is None, (self.home.parent / "server.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(self.url + "/jobs", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        raise AssertionError("studio server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()

    def jobs(self) -> list[dict]:
        return json.load(urllib.request.urlopen(self.url + "/jobs"))


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("studio")
    (base / "tiny.json").write_text(json.dumps(TINY))
    srv = Server(tiny_model_dir, base / "home", base / "tiny.json").start()
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    a, b = write_sample_pair(folder, 64)
    (folder / "notes.txt").write_text("not a photo")
    return a, b, folder / "notes.txt"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    try:
        drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    except Exception as err:  # a browser that is installed but cannot start here is a skip, with the reason
        _skip(f"chromium did not start: {str(err).splitlines()[0]}")
    drv.downloads = downloads
    yield drv
    drv.quit()


def _shot(drv, name: str) -> None:
    if os.environ.get("STUDIO_SCREENSHOTS"):
        drv.save_screenshot(str(Path(os.environ["STUDIO_SCREENSHOTS"]) / name))


def _choose(drv, server, a, b, frames: int) -> None:
    drv.get(server.url + "/")
    drv.find_element(By.ID, "f0").send_keys(str(a))
    drv.find_element(By.ID, "f1").send_keys(str(b))
    frames_box = drv.find_element(By.ID, "frames")
    frames_box.clear()
    frames_box.send_keys(str(frames))
    # record every progress value the page shows (the bar is a property, not an attribute)
    drv.execute_script("window.seen = []; setInterval(() => seen.push(+document.getElementById('bar').value), 20);")


def test_upload_progress_clip_plays_and_downloads(server, photos, browser):
    a, b, _ = photos
    _choose(browser, server, a, b, frames=2)
    assert browser.find_element(By.ID, "t1").get_attribute("src").startswith("blob:")  # thumbnails shown
    browser.find_element(By.ID, "go").click()
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: d.execute_script("return seen.some(v => v > 0 && v < 1)"))
    _shot(browser, "mid-job.png")
    duration = wait.until(lambda d: d.execute_script(
        "const v = document.getElementById('clip'); return v.readyState >= 1 && v.duration > 0 && v.duration"))
    assert duration > 0
    _shot(browser, "done.png")
    assert browser.find_element(By.ID, "msg").text == ""
    browser.find_element(By.ID, "dl-mp4").click()
    clip = wait.until(lambda d: [p for p in d.downloads.glob("*.mp4")])
    assert clip[0].stat().st_size > 0 and clip[0].read_bytes()[4:8] == b"ftyp"
    assert [j["state"] for j in server.jobs()] == ["done"]


def test_non_image_shows_error_and_queues_nothing(server, photos, browser):
    a, _, text = photos
    before = len(server.jobs())
    _choose(browser, server, a, text, frames=2)
    browser.find_element(By.ID, "go").click()
    msg = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "msg").text)
    assert "photo 2 (notes.txt) is not an image" in msg
    assert len(server.jobs()) == before


def test_cancel_mid_run(server, photos, browser):
    a, b, _ = photos
    _choose(browser, server, a, b, frames=64)  # long enough to be caught running
    browser.find_element(By.ID, "go").click()
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: d.execute_script("return seen.some(v => v > 0)"))
    browser.find_element(By.ID, "cancel").click()
    assert wait.until(lambda d: d.find_element(By.ID, "msg").text) == "Cancelled."
    job = server.jobs()[0]
    assert job["state"] == "cancelled" and job["progress"] < 1


def test_history_lists_finished_job_after_restart(server, browser):
    done = [j["id"] for j in server.jobs() if j["state"] == "done"]
    assert done
    server.stop()
    server.start()
    browser.get(server.url + "/")
    items = WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "li.hist[data-state=done]"))
    assert [i.get_attribute("data-id") for i in items] == done
    assert "render again with" in items[0].text
