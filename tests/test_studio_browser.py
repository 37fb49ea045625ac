"""The studio page in a real browser (Debian's headless chromium via selenium) against a real server process.

Skipped, with the reason, where chromium/chromedriver or selenium are missing; CI installs them
(`apt-get install -y chromium chromium-driver`). Set STUDIO_SCREENSHOTS=DIR to keep screenshots.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from dreammover.sample import write_sample_pair

from test_studio_kit import TOKEN, Server

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
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def _wait(driver, timeout: float, **kw) -> WebDriverWait:
    """A WebDriverWait that also tries again when the page re-rendered the element being read (the page
    rebuilds parts of itself as jobs change: a stale reference is a reason to look again, not a failure)."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,), **kw)


TINY = dict(size=64, num_frames=2, lora_steps=6, num_inference_steps=10, inversion_steps=4, feature_step=2)
EVIL = '<img src=x onerror="window.pwned=1">'
EVIL_NAME = "<img src=x onerror=window.pwned=2>"  # no quotes: browsers send '"' in a file name as %22


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


def _signin(drv, server, token: str = TOKEN) -> None:
    drv.get(server.url + "/")
    if drv.find_elements(By.ID, "signin"):
        drv.find_element(By.ID, "token").send_keys(token)
        drv.find_element(By.ID, "signin-go").click()
        _wait(drv, 20).until(lambda d: d.find_elements(By.ID, "f0"))


def _choose(drv, server, a, b, frames: int) -> None:
    _signin(drv, server)
    drv.find_element(By.ID, "f0").send_keys(str(a))
    drv.find_element(By.ID, "f1").send_keys(str(b))
    frames_box = drv.find_element(By.ID, "frames")
    frames_box.clear()
    frames_box.send_keys(str(frames))
    # record every progress value the page shows (the bar is a property, not an attribute)
    drv.execute_script("window.seen = []; setInterval(() => seen.push(+document.getElementById('bar').value), 20);")


def _post_from_page(drv, paths: tuple[Path, Path], names: tuple[str, str], prompt: str, frames: int = 2,
                    settings: str = "{}") -> dict:
    """POST /jobs from the signed-in page (its cookie), with any file names and prompt."""
    d0, d1 = (base64.b64encode(p.read_bytes()).decode() for p in paths)
    return drv.execute_async_script("""
        const [d0, d1, n0, n1, prompt, frames, settings, done] = arguments;
        const bytes = d => Uint8Array.from(atob(d), c => c.charCodeAt(0));
        const f = new FormData();
        f.append('image0', new File([bytes(d0)], n0, {type: 'image/png'}));
        f.append('image1', new File([bytes(d1)], n1, {type: 'image/png'}));
        f.append('prompt', prompt); f.append('frames', String(frames)); f.append('settings', settings);
        fetch('/jobs', {method: 'POST', body: f}).then(r => r.json()).then(done);""",
                                    d0, d1, names[0], names[1], prompt, frames, settings)


def test_signin_submit_progress_download_signout(server, photos, browser):
    a, b, _ = photos
    browser.get(server.url + "/")
    browser.find_element(By.ID, "token").send_keys("wrong-token")
    browser.find_element(By.ID, "signin-go").click()
    assert "not valid" in _wait(browser, 20).until(lambda d: d.find_element(By.ID, "signin-msg").text)
    _choose(browser, server, a, b, frames=2)
    assert "signed in as admin" in browser.find_element(By.ID, "user").text
    assert browser.find_element(By.ID, "t1").get_attribute("src").startswith("blob:")  # thumbnails shown
    browser.find_element(By.ID, "go").click()
    wait = _wait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: d.execute_script("return seen.some(v => v > 0 && v < 1)"))
    _shot(browser, "mid-job.png")
    duration = wait.until(lambda d: d.execute_script(
        "const v = document.getElementById('clip'); return v.readyState >= 1 && v.duration > 0 && v.duration"))
    assert duration > 0
    _shot(browser, "done.png")
    assert browser.find_element(By.ID, "msg").text == "" and browser.find_element(By.ID, "jobmsg").text == ""
    browser.find_element(By.ID, "dl-mp4").click()
    clip = wait.until(lambda d: [p for p in d.downloads.glob("*.mp4")])
    assert clip[0].stat().st_size > 0 and clip[0].read_bytes()[4:8] == b"ftyp"
    assert [j["state"] for j in server.jobs()] == ["done"]
    browser.find_element(By.ID, "signout-go").click()
    _wait(browser, 20).until(lambda d: d.find_elements(By.ID, "signin"))
    status = browser.execute_async_script("fetch('/jobs').then(r => arguments[0](r.status))")
    assert status == 401  # the cookie is gone


def test_non_image_shows_error_and_queues_nothing(server, photos, browser):
    a, _, text = photos
    before = len(server.jobs())
    _choose(browser, server, a, text, frames=2)
    browser.find_element(By.ID, "go").click()
    msg = _wait(browser, 30).until(lambda d: d.find_element(By.ID, "msg").text)
    assert "photo 2 (notes.txt) is not an image" in msg
    assert len(server.jobs()) == before


def test_empty_frames_box_is_said_not_silently_defaulted(server, photos, browser):
    a, b, _ = photos
    before = len(server.jobs())
    _choose(browser, server, a, b, frames=2)
    browser.find_element(By.ID, "frames").clear()
    browser.find_element(By.ID, "go").click()
    assert browser.find_element(By.ID, "msg").text.startswith("In-between frames is empty")
    assert len(server.jobs()) == before


def test_html_in_prompt_and_file_name_is_shown_escaped(server, photos, browser):
    a, b, text = photos
    _signin(browser, server)
    job = _post_from_page(browser, (a, b), (f"{EVIL_NAME}.png", "<b>two</b>.png"), f"a cat {EVIL}")
    assert job["state"] in ("queued", "running"), job
    bad = _post_from_page(browser, (a, text), ("a.png", f"{EVIL_NAME}.txt"), "")  # refused, naming the file
    browser.get(server.url + "/")
    row = _wait(browser, 30).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"li.hist[data-id='{job['id']}']"))
    assert f"a cat {EVIL}" in row.text and f"{EVIL_NAME}.png → <b>two</b>.png" in row.text  # shown as text
    assert row.find_elements(By.CSS_SELECTOR, "img[src=x]") == []  # not as markup
    assert [e.text for e in row.find_elements(By.TAG_NAME, "b")] == ["raw"]  # only the page's own bold
    browser.execute_script("say(arguments[0])", bad["detail"])  # the page's own way to show an error
    assert EVIL_NAME in browser.find_element(By.ID, "msg").text
    time.sleep(0.5)  # an injected onerror would have run by now
    assert browser.execute_script("return window.pwned") is None


def test_cancel_mid_run_shows_in_the_job_panel(server, photos, browser):
    a, b, _ = photos
    _choose(browser, server, a, b, frames=64)  # long enough to be caught running
    browser.find_element(By.ID, "go").click()
    wait = _wait(browser, 120, poll_frequency=0.05)
    wait.until(lambda d: d.execute_script("return seen.some(v => v > 0)"))
    browser.find_element(By.ID, "cancel").click()
    assert wait.until(lambda d: d.find_element(By.ID, "jobmsg").text) == "Cancelled."
    assert browser.find_element(By.ID, "msg").text == ""  # not under the form
    job = server.jobs()[0]
    assert job["state"] == "cancelled" and job["progress"] < 1


def test_second_tab_follows_a_running_job_and_the_menu_keeps_its_choice(server, photos, browser):
    a, b, _ = photos
    _signin(browser, server)
    slow = _post_from_page(browser, (a, b), ("a.png", "b.png"), "", 8, json.dumps({"lora_steps": 400}))
    first = browser.current_window_handle
    browser.switch_to.new_window("tab")
    try:
        browser.get(server.url + "/")
        link = _wait(browser, 20).until(
            lambda d: d.find_element(By.CSS_SELECTOR, f"#queue a[data-id='{slow['id']}']"))
        assert slow["id"] not in link.text  # a readable label, not a raw id
        link.click()
        bar = browser.find_element(By.ID, "bar")
        start = float(bar.get_property("value"))
        _wait(browser, 60).until(lambda d: float(bar.get_property("value")) > start)
        # the re-render menu of a finished job keeps its choice across the page's 5 s refreshes
        done = [j for j in server.jobs() if j["state"] == "done"][0]
        menu = Select(browser.find_element(By.CSS_SELECTOR, f"li.hist[data-id='{done['id']}'] .again-preset"))
        menu.select_by_value("gif-loop")
        time.sleep(5.5)  # at least one refresh while the running job's row changes
        menu = Select(browser.find_element(By.CSS_SELECTOR, f"li.hist[data-id='{done['id']}'] .again-preset"))
        assert menu.first_selected_option.get_attribute("value") == "gif-loop"
        browser.find_element(By.ID, "cancel").click()  # a job followed from a second tab can be cancelled there
        assert _wait(browser, 60).until(lambda d: d.find_element(By.ID, "jobmsg").text) == "Cancelled."
    finally:
        browser.close()
        browser.switch_to.window(first)


def test_phone_layout_tap_targets_and_show_plays_on_screen(server, browser):
    browser.set_window_size(390, 844)
    try:
        _signin(browser, server)
        _wait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.hist[data-state=done]"))
        width = browser.execute_script("return window.innerWidth")
        assert width <= 400
        small = browser.execute_script("""
            const out = [];
            for (const el of document.querySelectorAll('button, select, a, input:not([type=file]):not([type=checkbox])')) {
              const r = el.getBoundingClientRect();
              if (r.width && r.height && r.height < 40) out.push(`${el.tagName}#${el.id}.${el.className} ${r.height}`);
            }
            for (const el of document.querySelectorAll('.formats label, .drop')) {
              if (el.getBoundingClientRect().height < 40) out.push('label ' + el.textContent);
            }
            return out;""")
        assert small == []
        show = browser.find_element(By.CSS_SELECTOR, "li.hist[data-state=done] a.open")
        browser.execute_script("arguments[0].scrollIntoView()", show)
        show.click()
        visible = _wait(browser, 30).until(lambda d: d.execute_script("""
            const v = document.getElementById('clip'), r = v.getBoundingClientRect();
            return !v.paused && v.currentTime > 0 && r.top >= -1 && r.top < window.innerHeight && r.height > 50"""))
        assert visible
        _shot(browser, "phone.png")
    finally:
        browser.set_window_size(1280, 1000)


def test_history_lists_finished_job_after_restart(server, browser):
    done = [j["id"] for j in server.jobs() if j["state"] == "done"]
    assert done
    server.stop()
    server.start()
    _signin(browser, server)
    items = _wait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "li.hist[data-state=done]"))
    assert [i.get_attribute("data-id") for i in items] == done
    assert "render again with" in items[0].text
