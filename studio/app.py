"""The job API (FastAPI; documented at /docs) and the page at /."""
from __future__ import annotations

import asyncio
import io
import json
import shutil
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from dreammover.config import InterpolationConfig
from dreammover.presets import PRESETS, SUFFIX, ClipPreset, render_clip

from .page import PAGE
from .runner import load_frames
from .svd_jobs import BACKENDS, SVDKeyframeConfig
from .store import FINAL

SHARED = ("num_frames", "size", "seed")  # settings both backends have
MEDIA = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}


@dataclass(frozen=True)
class Limits:
    """What one upload may ask for; beyond these the API answers 413/400 before anything is queued."""

    upload_bytes: int = 20 * 1024 * 1024
    pixels: int = 40_000_000
    frames: int = 64
    size: int = 1024


def _words(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors())


def _check_image(data: bytes, label: str, limits: Limits):
    """Open an upload as an image without trusting it: size limit, pixel limit (bombs), full decode."""
    from PIL import Image, ImageOps

    if not data:
        raise HTTPException(400, f"{label} is empty: choose a photo")
    if len(data) > limits.upload_bytes:
        raise HTTPException(413, f"{label} is {len(data) / 1e6:.1f} MB; "
                                 f"the limit is {limits.upload_bytes / 1e6:.0f} MB")
    try:
        im = Image.open(io.BytesIO(data))
        if im.width * im.height > limits.pixels:
            raise HTTPException(413, f"{label} is {im.width}x{im.height} pixels; the limit is "
                                     f"{limits.pixels / 1e6:.0f} megapixels")
        im = ImageOps.exif_transpose(im).convert("RGB")
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(400, f"{label} is not an image we can read (use JPEG, PNG or WebP)") from None
    return im


def create_app(store, runner, default_config: InterpolationConfig | None = None,
               limits: Limits = Limits()) -> FastAPI:
    """The API over a JobStore and a started Runner."""
    app = FastAPI(title="dreammover studio", version="1",
                  description="Two photos in, a short clip out: queue jobs, follow them, download clips.")
    base = {"backend": "dreammover", **(default_config or InterpolationConfig()).model_dump()}
    # svd jobs start from SVD's defaults with the studio's N, size and seed (what the page shows)
    svd_base = {"backend": "svd", **SVDKeyframeConfig(**{k: base[k] for k in SHARED}).model_dump()}
    svd_ready = getattr(runner.backend, "svd", None) is not None
    render_lock = threading.Lock()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):  # one line, not a list of objects
        msg = "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": msg}, status_code=422)

    def job_or_404(job_id: str) -> dict:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    def public(job: dict) -> dict:
        j, u = dict(job), f"/jobs/{job['id']}"
        j["links"] = {"self": u, "events": f"{u}/events", "preview": f"{u}/preview", "clip": f"{u}/clip",
                      "frames": f"{u}/frames", "thumbs": [f"{u}/thumb/0", f"{u}/thumb/1", f"{u}/thumb/clip"]}
        if job["state"] == "queued":
            q = store.queued()
            j["position"] = q.index(job["id"]) + 1 if job["id"] in q else None
        j["duration"] = (job["finished"] - job["started"]) if job["finished"] and job["started"] else None
        return j

    def settings_from(start: dict, preset: str, settings: str, frames, size, prompt, seed,
                      backend: str | None = None) -> tuple[dict, dict]:
        backend = backend or start.get("backend", "dreammover")
        if backend not in BACKENDS:
            raise HTTPException(400, f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
        if backend == "svd" and not svd_ready:
            raise HTTPException(400, "the svd backend is not available here: start the studio with "
                                     "--svd-model (e.g. tiny-svd or stabilityai/stable-video-diffusion-img2vid-xt)")
        if backend != start.get("backend", "dreammover"):  # switching method: keep only what both share
            start = {**(svd_base if backend == "svd" else base), **{k: start[k] for k in SHARED if k in start}}
        if backend == "svd" and prompt:
            raise HTTPException(400, "the svd backend takes no prompt: leave it empty")
        if preset not in PRESETS:
            raise HTTPException(400, f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
        try:
            extra = json.loads(settings or "{}")
        except json.JSONDecodeError:
            raise HTTPException(400, "settings must be a JSON object") from None
        if not isinstance(extra, dict):
            raise HTTPException(400, "settings must be a JSON object")
        clip_over = extra.pop("clip", {}) or {}
        for key in ("backend", "backward_weights", "backward_weights_base"):  # no server paths from a form
            if key in extra:
                raise HTTPException(400, f"settings: {key!r} cannot be set here" +
                                    (": use the backend field" if key == "backend" else ""))
        prompt = prompt if backend == "dreammover" else None  # svd: only an empty prompt gets here
        page = {k: v for k, v in dict(num_frames=frames, size=size, prompt=prompt, seed=seed).items()
                if v is not None}
        cls = SVDKeyframeConfig if backend == "svd" else InterpolationConfig
        try:
            fields = {k: v for k, v in {**start, **extra, **page}.items() if k != "backend"}
            config = cls(**fields)
            clip = PRESETS[preset].model_validate({**PRESETS[preset].model_dump(), **clip_over})
        except ValidationError as err:
            raise HTTPException(400, f"bad settings: {_words(err)}") from None
        except ValueError as err:
            raise HTTPException(400, f"bad settings: {err}") from None
        if config.num_frames > limits.frames:
            raise HTTPException(400, f"{config.num_frames} in-between frames asked; the limit is {limits.frames}")
        if (config.size or 0) > limits.size:
            raise HTTPException(400, f"size {config.size} asked; the limit is {limits.size} px")
        return {"backend": backend, **config.model_dump()}, clip.model_dump()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.replace("__PRESETS__", json.dumps({k: v.model_dump() for k, v in PRESETS.items()})) \
                   .replace("__LIMITS__", json.dumps(limits.__dict__)).replace("__DEFAULTS__", json.dumps(base)) \
                   .replace("__SVD__", json.dumps(svd_ready))

    @app.get("/presets")
    def presets() -> dict:
        """The named clip presets (dreammover/presets.py)."""
        return {k: v.model_dump() for k, v in PRESETS.items()}

    @app.post("/jobs", status_code=201)
    async def submit(request: Request, image0: UploadFile = File(..., description="first photo"),
                     image1: UploadFile = File(..., description="second photo"),
                     preset: str = Form("raw"), settings: str = Form("{}", description="JSON: InterpolationConfig "
                                                                     "fields, and 'clip': ClipPreset overrides"),
                     frames: int | None = Form(None), size: int | None = Form(None),
                     prompt: str | None = Form(None), seed: int | None = Form(None),
                     backend: str = Form("dreammover", description="dreammover, or svd (Generative Inbetweening; "
                                         "needs the studio started with --svd-model)")) -> dict:
        """Queue a clip: two photos (multipart) and a preset/settings; bad input is refused before queueing."""
        length = int(request.headers.get("content-length") or 0)
        if length > 2 * limits.upload_bytes + 65536:
            raise HTTPException(413, f"upload is {length / 1e6:.1f} MB; the limit is "
                                     f"{limits.upload_bytes / 1e6:.0f} MB per photo")
        cfg, clip = settings_from(base, preset, settings, frames, size, prompt, seed, backend)
        ims = []
        for label, up in (("photo 1", image0), ("photo 2", image1)):
            data = await up.read(limits.upload_bytes + 1)
            ims.append(_check_image(data, f"{label} ({up.filename or 'upload'})", limits))
        job_id = store.create(cfg, clip)
        save_inputs(store.folder(job_id), ims)
        store.update(job_id, state="queued", stage="queued")  # only now can the runner see it
        runner.wake()
        return public(store.get(job_id))

    @app.post("/jobs/{job_id}/again", status_code=201)
    def again(job_id: str, preset: str = Form("raw"), settings: str = Form("{}"),
              frames: int | None = Form(None), size: int | None = Form(None), prompt: str | None = Form(None),
              seed: int | None = Form(None), backend: str | None = Form(None)) -> dict:
        """Render a job's photos again with another preset/settings; same settings: re-encode only (no UNet)."""
        src = job_or_404(job_id)
        # unspecified settings come from the source job
        cfg, clip = settings_from(src["settings"], preset, settings, frames, size, prompt, seed, backend)
        new = store.create(cfg, clip, source=job_id)
        for name in ("in0.png", "in1.png", "thumb0.jpg", "thumb1.jpg"):
            shutil.copy(store.folder(job_id) / name, store.folder(new) / name)
        store.update(new, state="queued", stage="queued")
        runner.wake()
        return public(store.get(new))

    @app.get("/jobs")
    def history(limit: int = 50) -> list[dict]:
        """Past and current jobs, newest first, with settings, durations and thumbnail links."""
        return [public(j) for j in store.list(limit)]

    @app.get("/jobs/{job_id}")
    def status(job_id: str) -> dict:
        """State (queued/running/done/failed/cancelled), stage, progress 0-1, ETA in seconds, error."""
        return public(job_or_404(job_id))

    @app.get("/jobs/{job_id}/events")
    async def events(job_id: str) -> StreamingResponse:
        """Server-sent events: the job's status whenever it changes, until it is finished."""
        job_or_404(job_id)

        async def stream():
            last = None
            while True:
                job = public(store.get(job_id))
                snap = json.dumps(job, sort_keys=True)
                if snap != last:
                    last = snap
                    yield f"data: {snap}\n\n"
                if job["state"] in FINAL:
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/jobs/{job_id}/preview")
    def preview(job_id: str) -> FileResponse:
        """The latest predicted clean middle frame (JPEG), refreshed every few denoising steps."""
        job_or_404(job_id)
        path = store.folder(job_id) / "preview.jpg"
        if not path.exists():
            raise HTTPException(404, "no preview yet: it appears once denoising starts")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/jobs/{job_id}/thumb/{which}")
    def thumb(job_id: str, which: str) -> FileResponse:
        """Thumbnails: 0 and 1 (the photos) or clip (its middle frame)."""
        job_or_404(job_id)
        path = store.folder(job_id) / {"0": "thumb0.jpg", "1": "thumb1.jpg", "clip": "thumb.jpg"}.get(which, "-")
        if not path.exists():
            raise HTTPException(404, "no such thumbnail")
        return FileResponse(path, media_type="image/jpeg")

    def finished(job_id: str) -> dict:
        job = job_or_404(job_id)
        if job["state"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['state']}, not done")
        return job

    @app.get("/jobs/{job_id}/clip")
    def clip(job_id: str, format: str | None = None) -> FileResponse:
        """The clip; format mp4/webm/gif re-encodes the cached frames with the job's preset (no model work)."""
        job = finished(job_id)
        preset = ClipPreset(**job["preset"])
        fmt = format or preset.format
        if fmt not in MEDIA:
            raise HTTPException(400, f"format {fmt!r}: use mp4, webm or gif (PNG frames: /jobs/{job_id}/frames)")
        folder = store.folder(job_id)
        path = folder / f"clip{SUFFIX[fmt]}"
        with render_lock:
            if not path.exists():
                render_clip(load_frames(folder / "frames"), preset.model_copy(update={"format": fmt}), path)
        return FileResponse(path, media_type=MEDIA[fmt], filename=f"dreammover-{job_id}{SUFFIX[fmt]}")

    @app.get("/jobs/{job_id}/frames")
    def frames(job_id: str) -> Response:
        """The N+2 generated frames as PNGs in a zip."""
        finished(job_id)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            for p in sorted((store.folder(job_id) / "frames").glob("*.png")):
                z.write(p, p.name)
        return Response(buf.getvalue(), media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="dreammover-{job_id}-frames.zip"'})

    @app.delete("/jobs/{job_id}")
    def cancel(job_id: str) -> dict:
        """Cancel: a queued job at once, a running one at its next step (the device is then free)."""
        job = job_or_404(job_id)
        if not runner.cancel(job_id):
            raise HTTPException(409, f"job {job_id} is already {job['state']}")
        return public(store.get(job_id))

    return app


def save_inputs(folder: Path, images) -> None:
    """The photos as PNG (EXIF applied) plus small thumbnails for the page."""
    for i, im in enumerate(images):
        im.save(folder / f"in{i}.png")
        t = im.copy()
        t.thumbnail((256, 256))
        t.save(folder / f"thumb{i}.jpg", quality=85)
