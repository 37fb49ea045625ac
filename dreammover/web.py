"""A small web page for the content team: pick two photos, get the clip. Runs the library directly."""
from __future__ import annotations

import base64
import tempfile
import threading
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

MAX_FRAMES, MAX_SIZE = 64, 1024  # one request must not be able to occupy the GPU for hours


class ClipRequest(BaseModel):
    """Two base64-encoded photos and the few settings the page exposes."""

    image0: str
    image1: str
    frames: int = Field(16, ge=1, le=MAX_FRAMES)
    size: int = Field(512, ge=64, le=MAX_SIZE)
    prompt: str = ""
    seed: int = 0
    fps: float = Field(10.0, gt=0, le=60)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>DreamMover</title>
<style>body{font-family:sans-serif;max-width:760px;margin:2em auto}label{display:block;margin:.5em 0}
video{max-width:100%;margin-top:1em}#msg{color:#a00}</style></head>
<body><h1>DreamMover</h1><p>Two photos with large motion in, a short clip out.</p>
<label>First photo <input type="file" id="f0" accept="image/*"></label>
<label>Second photo <input type="file" id="f1" accept="image/*"></label>
<label>In-between frames <input type="number" id="frames" value="16" min="1" max="64"></label>
<label>Size (long side) <input type="number" id="size" value="512" min="64" step="64"></label>
<label>Prompt <input type="text" id="prompt" value=""></label>
<button id="go">Make clip</button> <span id="msg"></span>
<div><video id="out" controls loop autoplay muted></video></div>
<script>
const b64 = f => new Promise((ok, bad) => { const r = new FileReader();
  r.onload = () => ok(r.result.split(',')[1]); r.onerror = bad; r.readAsDataURL(f); });
document.getElementById('go').onclick = async () => {
  const msg = document.getElementById('msg'); const [a, b] = ['f0', 'f1'].map(i => document.getElementById(i).files[0]);
  if (!a || !b) { msg.textContent = 'choose two photos'; return; }
  msg.textContent = 'working (minutes on a GPU-less machine)...';
  const body = {image0: await b64(a), image1: await b64(b), frames: +document.getElementById('frames').value,
                size: +document.getElementById('size').value, prompt: document.getElementById('prompt').value};
  const r = await fetch('interpolate', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify(body)});
  if (!r.ok) { msg.textContent = (await r.json()).detail; return; }
  document.getElementById('out').src = URL.createObjectURL(await r.blob()); msg.textContent = '';
};
</script></body></html>"""


def _decode_image(data: str, name: str) -> np.ndarray:
    from .images import ImageInputError, load_image

    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError) as err:
        raise ImageInputError(f"{name}: not base64 data") from err
    with tempfile.NamedTemporaryFile(suffix=".img") as fh:
        fh.write(raw)
        fh.flush()
        return load_image(fh.name)


def create_app(dm):
    """FastAPI app around one loaded DreamMover; one clip at a time (the model holds per-pair LoRA state)."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse, Response

    from .config import InterpolationConfig
    from .images import ImageInputError
    from .video import write_video

    app = FastAPI(title="DreamMover")
    lock = threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.post("/interpolate")
    def interpolate(req: ClipRequest) -> Response:
        try:
            im0, im1 = _decode_image(req.image0, "image0"), _decode_image(req.image1, "image1")
        except ImageInputError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        config = InterpolationConfig(num_frames=req.frames, size=req.size, prompt=req.prompt, seed=req.seed)
        with lock:
            result = dm.interpolate(im0, im1, config)
        with tempfile.TemporaryDirectory() as tmp:
            data = write_video(result.frames, Path(tmp) / "clip.mp4", fps=req.fps).read_bytes()
        return Response(content=data, media_type="video/mp4",
                        headers={"X-Frames": str(len(result.frames))})

    return app
