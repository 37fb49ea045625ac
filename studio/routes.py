"""The job API: submit, re-render, follow (status, events, preview), download (clip, frames zip), cancel.

Every route acts for `request.state.principal` (set by studio.guard): a user sees and acts on their own jobs,
an admin on all; anyone else's job is a 404, as if it did not exist. CPU work (image checks, thumbnails,
estimates, the zip) runs in worker threads, never on the event loop.
"""
from __future__ import annotations

import asyncio
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from dreammover.presets import SUFFIX

from . import settings as S
from .auth import Principal
from .limits import StudioLimits
from .restyle_jobs import add_routes as add_restyle_routes, is_restyle
from .store import FINAL
from .uploads import check_image, save_inputs, stored_images

MEDIA = {"mp4": "video/mp4", "webm": "video/webm", "gif": "image/gif"}
# Uploads decoded and saved at once; more wait their turn, so a burst of submits cannot starve status polls.
UPLOAD_WORKERS = 2


@dataclass
class Context:
    """What the routes share: the job store and runner, the limits, the defaults, the model (for estimates)."""

    store: object
    runner: object
    limits: StudioLimits
    defaults: S.Defaults
    components: object = None


def who(request: Request) -> Principal:
    principal = request.state.principal
    if principal is None:  # only open routes get here without one, and they do not call this
        raise HTTPException(401, "sign in first")
    return principal


def router(ctx: Context) -> APIRouter:
    api = APIRouter()
    store, runner, limits = ctx.store, ctx.runner, ctx.limits
    gate: dict = {}

    def job_or_404(job_id: str, principal: Principal) -> dict:
        job = store.get(job_id)
        if job is None or not principal.may_see(job.get("owner")):
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

    def prepare(principal: Principal, form: S.Form, start: dict, images) -> tuple:
        """Checked settings, the estimate and the warnings of a new job (runs in a worker thread)."""
        config, clip, formats = S.parse(form, start, ctx.defaults, limits)
        hw = (images[0].height, images[0].width)
        plan = S.estimate(config, hw, limits, ctx.components, S.speed(store.list(20)))
        outputs = {f: {"state": "queued", **S.describe_output(f, config, clip, hw, limits)} for f in formats}
        return config, clip, outputs, plan, S.warnings_for(images, config, clip)

    def queue(principal: Principal, config, clip, outputs, plan, warns, source: str | None, inputs,
              names: list[str]) -> dict:
        cfg = {"backend": "svd" if isinstance(config, S.SVDKeyframeConfig) else "dreammover", **config.model_dump()}
        job_id = store.create(cfg, clip.model_dump(), source=source, owner=principal.name, outputs=outputs,
                              warnings=warns, names=names)
        inputs(store.folder(job_id))
        store.update(job_id, state="queued", stage="queued", eta=plan.get("seconds"))  # now the runner sees it
        runner.wake()
        return public(store.get(job_id))

    @api.post("/jobs", status_code=201)
    async def submit(request: Request, image0: UploadFile = File(..., description="first photo"),
                     image1: UploadFile = File(..., description="second photo"),
                     preset: str = Form("raw"), settings: str = Form("{}", description="JSON: config fields of "
                                                                     "the backend, and 'clip': ClipPreset overrides"),
                     frames: int | None = Form(None), size: int | None = Form(None),
                     prompt: str | None = Form(None), seed: int | None = Form(None),
                     backend: str = Form("dreammover", description="dreammover, or svd (Generative Inbetweening; "
                                         "needs the studio started with --svd-model)"),
                     formats: str | None = Form(None, description="extra formats to encode, e.g. 'gif,webm'")) -> dict:
        """Queue a clip: two photos (multipart) and a preset/settings; bad input is refused before queueing."""
        principal = who(request)
        form = S.Form(preset, settings, frames, size, prompt, seed, backend, formats)
        S.parse(form, ctx.defaults.base, ctx.defaults, limits)  # settings first: cheap, no photo decoded
        names = [(up.filename or "upload")[:80] for up in (image0, image1)]

        def work() -> dict:  # decode, check, estimate, save: all CPU, all in a worker thread
            images = [check_image(up.file, f"{label} ({name})", limits)
                      for label, up, name in (("photo 1", image0, names[0]), ("photo 2", image1, names[1]))]
            prepared = prepare(principal, form, ctx.defaults.base, images)
            return queue(principal, *prepared, None, lambda folder: save_inputs(folder, images), names)

        if "uploads" not in gate:  # made on first use: it belongs to the running event loop
            gate["uploads"] = anyio.CapacityLimiter(UPLOAD_WORKERS)
        return await anyio.to_thread.run_sync(work, limiter=gate["uploads"])

    @api.post("/jobs/{job_id}/again", status_code=201)
    def again(request: Request, job_id: str, preset: str = Form("raw"), settings: str = Form("{}"),
              frames: int | None = Form(None), size: int | None = Form(None), prompt: str | None = Form(None),
              seed: int | None = Form(None), backend: str | None = Form(None),
              formats: str | None = Form(None)) -> dict:
        """Render a job's photos again with another preset/settings; same settings: re-encode only (no UNet)."""
        principal = who(request)
        src = job_or_404(job_id, principal)
        if is_restyle(src["settings"]):
            raise HTTPException(400, "a restyled clip cannot be rendered again: restyle its source job again")
        form = S.Form(preset, settings, frames, size, prompt, seed, backend, formats)
        folder = store.folder(job_id)
        prepared = prepare(principal, form, src["settings"], stored_images(folder))  # unset: the source's

        def inputs(new: Path) -> None:
            for name in ("in0.png", "in1.png", "thumb0.jpg", "thumb1.jpg"):
                shutil.copy(folder / name, new / name)

        return queue(principal, *prepared, job_id, inputs, src.get("names") or [])

    @api.get("/jobs")
    def history(request: Request, limit: int = 50) -> list[dict]:
        """Your jobs (an admin: everyone's), newest first, with settings, durations and thumbnail links."""
        principal = who(request)
        return [public(j) for j in store.list(min(max(limit, 1), 500), None if principal.admin else principal.name)]

    @api.get("/jobs/{job_id}")
    def status(request: Request, job_id: str) -> dict:
        """State (queued/running/done/failed/cancelled), stage, progress 0-1, ETA in seconds, error."""
        return public(job_or_404(job_id, who(request)))

    @api.get("/jobs/{job_id}/events")
    async def events(request: Request, job_id: str) -> StreamingResponse:
        """Server-sent events: the job's status whenever it changes, until it is finished."""
        await run_in_threadpool(job_or_404, job_id, who(request))

        async def stream():
            last = None
            while True:
                job = public(await run_in_threadpool(store.get, job_id))
                snap = json.dumps(job, sort_keys=True)
                if snap != last:
                    last = snap
                    yield f"data: {snap}\n\n"
                if job["state"] in FINAL:
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @api.get("/jobs/{job_id}/preview")
    def preview(request: Request, job_id: str) -> FileResponse:
        """The latest predicted clean middle frame (JPEG), refreshed every few denoising steps."""
        job_or_404(job_id, who(request))
        path = store.folder(job_id) / "preview.jpg"
        if not path.exists():
            raise HTTPException(404, "no preview yet: it appears once denoising starts")
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @api.get("/jobs/{job_id}/thumb/{which}")
    def thumb(request: Request, job_id: str, which: str) -> FileResponse:
        """Thumbnails: 0 and 1 (the photos) or clip (its middle frame)."""
        job_or_404(job_id, who(request))
        path = store.folder(job_id) / {"0": "thumb0.jpg", "1": "thumb1.jpg", "clip": "thumb.jpg"}.get(which, "-")
        if not path.exists():
            raise HTTPException(404, "no such thumbnail")
        return FileResponse(path, media_type="image/jpeg")

    def finished(job_id: str, principal: Principal) -> dict:
        job = job_or_404(job_id, principal)
        if job["state"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['state']}, not done")
        return job

    @api.get("/jobs/{job_id}/clip")
    def clip(request: Request, job_id: str, format: str | None = None) -> FileResponse:
        """The clip in one of the formats encoded with the job (its preset's, plus those asked for)."""
        job = finished(job_id, who(request))
        made = job.get("outputs") or {}
        fmt = format or job["preset"]["format"]
        if fmt not in MEDIA:
            raise HTTPException(400, f"format {fmt!r}: use mp4, webm or gif (PNG frames: /jobs/{job_id}/frames)")
        path = store.folder(job_id) / f"clip{SUFFIX[fmt]}"
        if fmt not in made or not path.exists():
            raise HTTPException(404, f"this job was not encoded as {fmt.upper()}: render it again with {fmt} "
                                     "ticked (no model work, only encoding)")
        return FileResponse(path, media_type=MEDIA[fmt], filename=f"dreammover-{job_id}{SUFFIX[fmt]}")

    @api.get("/jobs/{job_id}/frames")
    def frames(request: Request, job_id: str) -> StreamingResponse:
        """The N+2 generated frames as PNGs in a zip, streamed as it is written (never whole in memory)."""
        finished(job_id, who(request))
        paths = sorted((store.folder(job_id) / "frames").glob("*.png"))
        return StreamingResponse(zip_stream(paths), media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="dreammover-{job_id}-frames.zip"'})

    @api.delete("/jobs/{job_id}")
    def cancel(request: Request, job_id: str) -> dict:
        """Cancel: a queued job at once, a running one at its next step or frame (encoding included)."""
        job = job_or_404(job_id, who(request))
        if not runner.cancel(job_id):
            raise HTTPException(409, f"job {job_id} is already {job['state']}")
        return public(store.get(job_id))

    add_restyle_routes(api, ctx, job_or_404, public, who)
    return api


class _Pipe:
    """A write-only, unseekable sink whose bytes the zip generator hands out as they come."""

    def __init__(self):
        self.parts: list[bytes] = []

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def zip_stream(paths: list[Path], chunk: int = 1 << 20):
    """A zip of `paths` (stored, the PNGs are compressed already) as byte chunks; a sync generator, so
    Starlette iterates it in a worker thread."""
    sink = _Pipe()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_STORED) as z:
        for p in paths:
            with open(p, "rb") as src, z.open(p.name, "w", force_zip64=False) as dst:
                while data := src.read(chunk):
                    dst.write(data)
                    yield sink.take()
    yield sink.take()
