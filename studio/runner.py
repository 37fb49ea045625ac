"""The job worker: one thread per device takes queued jobs in order and runs them one at a time.

Stages report through the library's `on_event` hook (progress, ETA, preview, cancellation), encoding too:
every format the job asked for is encoded here, frame by frame (studio.encoding), so progress moves and a
cancel lands within a frame. A job whose settings equal its source job's only re-encodes the cached frames
(no UNet work). A job found running at start crashed the last process: it is retried once, then failed.
"""
from __future__ import annotations

import os
import shutil
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from dreammover.events import Cancelled, Event
from dreammover.presets import SUFFIX, ClipPreset

from .encoding import FrameFolder, Output, encode
from .limits import StudioLimits
from .local_backend import stage_weights
from .restyle_jobs import RestyleSettings, is_restyle, restyle_stage_weights, source_frames
from .svd_jobs import SVDKeyframeConfig, job_config, svd_stage_weights


class Shutdown(Cancelled):
    """The studio is stopping: the running job goes back to the queue without counting as a crash."""


def save_frames(frames, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png", compress_level=1)


def link_frames(src: Path, dst: Path) -> None:
    """A re-render's frames: hard links to the source job's where the file system allows, else copies."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)


class Runner:
    """Takes queued jobs from the store, one at a time, and keeps their live state (progress, ETA) there."""

    def __init__(self, store, backend, preview_every: int = 2, limits: StudioLimits | None = None):
        self.store, self.backend, self.preview_every = store, backend, preview_every
        self.limits = limits or StudioLimits()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._cancel: set[str] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> "Runner":
        self.store.requeue_interrupted()
        self._thread = threading.Thread(target=self._loop, name="studio-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop: the running job stops at its next step and goes back to the queue (not counted as a crash)."""
        if self._stop.is_set():  # the app's shutdown and the CLI may both stop it
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        getattr(self.backend, "close", lambda: None)()

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        """Queued: cancelled now. Running: stops at the next step or encoded frame. Finished: False."""
        job = self.store.get(job_id)
        if job is None or job["state"] not in ("queued", "running"):
            return False
        self._cancel.add(job_id)
        if job["state"] == "queued":
            self.store.update(job_id, state="cancelled", stage="cancelled", finished=time.time(), eta=None)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            queued = self.store.queued()
            if not queued:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            try:
                self._run(queued[0])
            except Exception as err:  # never let one job stop the worker
                traceback.print_exc()
                self.store.update(queued[0], state="failed", stage="failed", finished=time.time(),
                                  error=f"{type(err).__name__}: {err}"[:500])

    def _run(self, job_id: str) -> None:
        store, folder = self.store, self.store.folder(job_id)
        job = store.get(job_id)
        restyle = is_restyle(job["settings"])  # a restyle job: its parent's frames, edited (studio.restyle_jobs)
        config = RestyleSettings.of(job["settings"]) if restyle else job_config(job["settings"])
        preset = ClipPreset(**job["preset"])
        outputs = job.get("outputs") or {preset.format: {}}
        source = store.get(job["source"]) if job["source"] else None
        reencode = bool(source and source["settings"] == job["settings"]
                        and (store.folder(source["id"]) / "frames").is_dir())
        reuse = reencode or (not restyle and getattr(self.backend, "reuses_pair", lambda *a: False)(folder, config))
        n = len(source_frames(folder)) if restyle else config.num_frames + 2
        encoded = sum(len(Output(f, n, preset, (64, 64), self.limits.gif_side, self.limits.gif_fps).plan)
                      for f in outputs)
        weights = ({"encoding": 1.0} if reencode else restyle_stage_weights(config) if restyle
                   else svd_stage_weights(config)
                   if isinstance(config, SVDKeyframeConfig) else stage_weights(config, reuse))
        weights["encoding"] = max(weights["encoding"], 0.02 * encoded)  # streamed: costs per output frame
        order = list(weights)
        total, started = sum(weights.values()), time.time()
        attempts = (job.get("attempts") or 0) + 1  # counted before any work: a crash below leaves it
        store.update(job_id, state="running", stage=order[0], progress=0.0, started=started, eta=None,
                     attempts=attempts)
        last = {"t": 0.0, "previews": 0}

        def report(ev: Event) -> None:
            if self._stop.is_set():
                raise Shutdown(job_id)
            if job_id in self._cancel:
                raise Cancelled(job_id)
            if ev.stage not in weights:
                return
            done = sum(weights[s] for s in order[:order.index(ev.stage)])
            p = min(0.999, (done + weights[ev.stage] * ev.step / max(1, ev.total)) / total)
            fresh = ev.latents is not None and (ev.step % self.preview_every == 0 or ev.step == ev.total)
            if fresh and self._preview(folder, ev):
                last["previews"] += 1
            now = time.time()
            if now - last["t"] > 0.2 or ev.step == ev.total or fresh:  # throttle database writes
                last["t"] = now
                eta = (now - started) * (1 - p) / p if p > 0.02 else None
                store.update(job_id, stage=ev.stage, progress=p, eta=eta, previews=last["previews"])

        try:
            if reencode:
                link_frames(store.folder(source["id"]) / "frames", folder / "frames")
                frames, stats = FrameFolder(folder / "frames"), {"seconds": {}, "unet_evals": {}}
            else:
                frames, stats = self.backend.run(folder, config, report)
                save_frames(frames, folder / "frames")
            save_thumb(np.asarray(frames[len(frames) // 2]), folder / "thumb.jpg")
            self._encode(job_id, frames, preset, outputs, encoded, report)
            store.update(job_id, state="done", stage="done", progress=1.0, eta=0.0, finished=time.time(),
                         frames=len(frames), unet_evals=stats["unet_evals"], seconds=stats["seconds"],
                         error=None)
        except Shutdown:
            store.update(job_id, state="queued", stage="queued", progress=0.0, eta=None, attempts=attempts - 1)
        except Cancelled:
            store.update(job_id, state="cancelled", stage="cancelled", finished=time.time(), eta=None)
        except Exception as err:  # a failed job must not stop the queue; its error is shown in words
            traceback.print_exc()
            store.update(job_id, state="failed", stage="failed", finished=time.time(), eta=None,
                         error=f"{type(err).__name__}: {err}"[:500])
        finally:
            self._cancel.discard(job_id)
            getattr(self.backend, "release", lambda: None)()

    def _encode(self, job_id: str, frames, preset: ClipPreset, outputs: dict, total: int, report) -> None:
        """Every asked format, streamed; each written frame reports progress (and may raise Cancelled)."""
        folder, hw = self.store.folder(job_id), np.asarray(frames[0]).shape[:2]
        done = {"k": 0}
        report(Event("encoding", 0, total))

        def on_frame() -> None:
            done["k"] += 1
            report(Event("encoding", done["k"], total))

        made = {}
        for fmt in outputs:
            out = Output(fmt, len(frames), preset, hw, self.limits.gif_side, self.limits.gif_fps)
            path = encode(frames, out, folder / f"clip{SUFFIX[fmt]}", on_frame)
            made[fmt] = {**out.describe(), "state": "done", "bytes": path.stat().st_size}
            self.store.update(job_id, outputs={**outputs, **made})

    def _preview(self, folder: Path, ev: Event) -> bool:
        """The in-between nearest δ = 1/2 of the current chunk, decoded once."""
        if not ev.deltas or not hasattr(self.backend, "preview"):
            return False
        j = int(np.argmin([abs(d - 0.5) for d in ev.deltas]))
        save_thumb(self.backend.preview(ev.latents[2 + j:3 + j]), folder / "preview.jpg", size=None)
        return True


def save_thumb(frame: np.ndarray, path: Path, size: int | None = 256) -> None:
    from PIL import Image

    im = Image.fromarray(frame)
    if size:
        im.thumbnail((size, size))
    tmp = path.with_name(path.name + ".part")
    im.save(tmp, format="JPEG", quality=85)
    tmp.replace(path)  # readers never see half a file
