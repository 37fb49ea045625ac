"""The web page: serves the form, returns a playable clip, rejects bad uploads with a clear 400."""
import base64
import io

import pytest
from PIL import Image

from dreammover.sample import sample_pair
from dreammover.video import read_video

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from dreammover.web import create_app  # noqa: E402


def _b64png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_page_and_clip(tiny_dm, tmp_path):
    client = TestClient(create_app(tiny_dm))
    assert "<input type=\"file\" id=\"f0\"" in client.get("/").text
    a, b = sample_pair(64)
    r = client.post("/interpolate", json={"image0": _b64png(a), "image1": _b64png(b), "frames": 2, "size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    (tmp_path / "c.mp4").write_bytes(r.content)
    assert len(read_video(tmp_path / "c.mp4")) == 4 == int(r.headers["X-Frames"])


def test_bad_upload_is_400_with_reason(tiny_dm):
    client = TestClient(create_app(tiny_dm))
    r = client.post("/interpolate", json={"image0": "!!!", "image1": "", "frames": 2, "size": 64})
    assert r.status_code == 400 and "image0" in r.json()["detail"]
    junk = base64.b64encode(b"not an image").decode()
    r = client.post("/interpolate", json={"image0": junk, "image1": junk, "frames": 2, "size": 64})
    assert r.status_code == 400 and "not a readable image" in r.json()["detail"]
    r = client.post("/interpolate", json={"image0": junk, "image1": junk, "frames": 500})
    assert r.status_code == 422
