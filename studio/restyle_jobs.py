"""Studio jobs of kind `restyle` (DreamMotion, dreammover.restyle): a finished job's frames edited by a text prompt.

A restyle job is a new job whose `source` is the finished job (its parent): the parent's frames are hard-linked
into the new job's `source/` folder, the edit runs through the same queue and runner (progress per iteration,
cancel from the progress callback), and the edited frames are encoded with the parent's preset and formats.
The text-to-video model is named at start (`--restyle-model`) and loaded by the first restyle job, on the
runner's thread and the studio's device; it then stays resident (one job at a time).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from fastapi import Form, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from dreammover.events import Event, EventFn

from .limits import refuse

KIND = "restyle"


class RestyleSettings(BaseModel):
    """What a restyle job stores (besides `backend` = restyle): the prompts, the box, the iterations, the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_prompt: str = Field(..., description="what the clip should look like")
    source_prompt: str = Field("", description="what the clip shows now (DDS's source branch)")
    box: tuple[int, int, int, int] | None = Field(None, description="x, y, w, h in frame pixels: only this "
                                                  "region takes the new look (the mask of masked V-DDS)")
    steps: int = Field(..., ge=1, description="optimisation iterations")
    model: str = Field(..., description="the text-to-video model spec")

    @classmethod
    def of(cls, settings: dict) -> "RestyleSettings":
        return cls(**{k: v for k, v in settings.items() if k != "backend"})


def is_restyle(settings: dict | None) -> bool:
    return bool(settings) and settings.get("backend") == KIND


def source_frames(folder: Path) -> list[Path]:
    """The parent's frames, as linked into the restyle job's folder."""
    return sorted((folder / "source").glob("*.png"))


def restyle_stage_weights(settings: RestyleSettings) -> dict[str, float]:
    """Expected cost per stage: an iteration is a batched guided UNet call plus the SSM backward (about 3)."""
    return {"restyle": 3.0 * settings.steps, "encoding": 1.0}


class RestyleJobs:
    """The `restyle` part of a LocalBackend: the model spec now, the T2VModel at the first restyle job."""

    def __init__(self, model: str, device=None, dtype=None):
        self.model_spec, self.device, self.dtype = model, device, dtype
        self.model = None

    def load(self):
        if self.model is None:
            from dreammover.restyle import load_t2v

            self.model = load_t2v(self.model_spec, device=self.device, dtype=self.dtype)
        return self.model

    def check_fits(self, n_frames: int, hw: tuple[int, int], steps: int) -> None:
        """Once the model is loaded: a 400 with the library's preflight when the edit cannot fit in memory."""
        if self.model is None:  # not loaded yet: loading it here would block the request for minutes
            return
        from dreammover.restyle import RestyleConfig, restyle_preflight

        from .settings import _total_memory

        plan = restyle_preflight(self.model, n_frames, hw[0], hw[1], RestyleConfig(steps=steps))
        # as for DreamMover jobs: a queued job runs later, so judge it by the device's whole memory
        plan.available_bytes = _total_memory(plan.available_bytes, self.model)
        if not plan.fits:
            raise HTTPException(400, f"this restyle job does not fit in memory here: {plan.summary()}")

    def run(self, folder: Path, settings: RestyleSettings, report: EventFn) -> tuple[list[np.ndarray], dict]:
        """The parent's frames -> the edited frames (same size and count) and {seconds, unet_evals}."""
        from PIL import Image

        from dreammover.restyle import RestyleConfig, mask_from_box, restyle

        report(Event(KIND, 0, settings.steps))  # a cancel while the model loads lands here
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in source_frames(folder)]
        model = self.load()
        h, w = frames[0].shape[:2]
        mask = mask_from_box(settings.box, len(frames), h, w) if settings.box else None
        config = RestyleConfig(steps=settings.steps)
        result = restyle(model, frames, settings.source_prompt, settings.target_prompt, mask, config,
                         progress=lambda done, total: report(Event(KIND, done, total)))
        # no UNet-evaluation count: the studio's speed (s per DreamMover UNet pass) must not mix in restyle work
        return result.frames, {"seconds": dict(result.seconds), "unet_evals": {}}


def parse_box(text: str | None, hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """'x,y,w,h' in frame pixels -> a box inside the frame, or a 400 that says what is wrong."""
    if text is None or not text.strip():
        return None
    try:
        x, y, w, h = (int(round(float(v))) for v in text.split(","))
    except ValueError:
        raise refuse("box", f"{text[:40]!r} is not x,y,w,h (four numbers, frame pixels)") from None
    height, width = hw
    if w < 1 or h < 1:
        raise refuse("box", f"{w}x{h} is empty: drag a box at least one pixel wide and high")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise refuse("box", f"{x},{y},{w},{h} reaches outside the {width}x{height} frame")
    return x, y, w, h


def add_routes(api, ctx, job_or_404, public, who) -> None:
    """GET /jobs/{id}/first-frame and POST /jobs/{id}/restyle on the job API's router."""
    store, runner, limits = ctx.store, ctx.runner, ctx.limits

    def done_job(job_id: str, request: Request) -> dict:
        job = job_or_404(job_id, who(request))
        if job["state"] != "done":
            raise HTTPException(409, f"job {job_id} is {job['state']}: only a finished job can be restyled")
        return job

    @api.get("/jobs/{job_id}/first-frame")
    def first_frame(request: Request, job_id: str) -> FileResponse:
        """The first frame of a finished job (PNG, frame pixels): draw the restyle box on it."""
        done_job(job_id, request)
        frames = sorted((store.folder(job_id) / "frames").glob("*.png"))
        if not frames:
            raise HTTPException(404, f"job {job_id} has no stored frames")
        return FileResponse(frames[0], media_type="image/png", headers={"Cache-Control": "no-store"})

    @api.post("/jobs/{job_id}/restyle", status_code=201)
    def restyle_job(request: Request, job_id: str,
                    target_prompt: str = Form("", description="what the clip should look like"),
                    source_prompt: str | None = Form(None, description="what it shows now (default: the job's "
                                                     "prompt)"),
                    box: str | None = Form(None, description="x,y,w,h on the first frame (default: whole frame)"),
                    steps: int | None = Form(None, description="iterations (default: the paper's 200, at most "
                                             "the studio's limit)")) -> dict:
        """Restyle a finished job's clip with a text prompt (DreamMotion): a new job of kind restyle."""
        from PIL import Image

        from .encoding import Output
        from .runner import link_frames

        parent = job_or_404(job_id, who(request))
        engine = getattr(runner.backend, "restyle", None)
        if engine is None:
            raise HTTPException(501, "restyle is not available on this studio: it runs jobs on a Prefect "
                                     "deployment (restyle runs in-process only; start the studio without --deployment)")
        parent = done_job(job_id, request)
        if not target_prompt.strip():
            raise HTTPException(422, "target prompt is empty: say what the clip should look like")
        source = source_prompt if source_prompt is not None else (
            parent["settings"].get("target_prompt") or parent["settings"].get("prompt") or "")
        for name, text in (("target_prompt", target_prompt), ("source_prompt", source)):
            if len(text) > limits.prompt_chars:
                raise refuse(name, f"{len(text)} characters is more than the limit of {limits.prompt_chars}")
        steps = min(200, limits.restyle_steps) if steps is None else steps
        if steps > limits.restyle_steps:
            raise refuse("steps", f"{steps} is more than the limit of {limits.restyle_steps}")
        if steps < 1:
            raise refuse("steps", f"{steps} is less than the minimum of 1")
        frames = sorted((store.folder(job_id) / "frames").glob("*.png"))
        if not frames:
            raise HTTPException(409, f"job {job_id} has no stored frames to restyle")
        with Image.open(frames[0]) as im:
            hw = (im.height, im.width)
        settings = RestyleSettings(target_prompt=target_prompt, source_prompt=source, box=parse_box(box, hw),
                                   steps=steps, model=engine.model_spec)
        engine.check_fits(len(frames), hw, steps)
        preset = parent["preset"]
        from dreammover.presets import ClipPreset

        clip = ClipPreset(**preset)
        outputs = {f: {"state": "queued", **Output(f, len(frames), clip, hw, limits.gif_side,
                                                   limits.gif_fps).describe()}
                   for f in (parent.get("outputs") or {clip.format: {}})}
        new = store.create({"backend": KIND, **settings.model_dump()}, preset, source=job_id,
                           owner=who(request).name, outputs=outputs, names=parent.get("names") or [])
        folder, old = store.folder(new), store.folder(job_id)
        link_frames(old / "frames", folder / "source")
        for name in ("in0.png", "in1.png", "thumb0.jpg", "thumb1.jpg"):  # history thumbnails, "again" inputs
            if (old / name).exists():
                shutil.copy(old / name, folder / name)
        store.update(new, state="queued", stage="queued")  # now the runner sees it
        runner.wake()
        return public(store.get(new))
