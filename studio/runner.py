"""The job worker: one thread per device takes queued jobs in order and runs them one at a time.

Stages report through the library's `on_event` hook (progress, ETA, preview, cancellation). A job whose settings
equal its source job's only re-encodes the cached frames (no UNet work); a job that changes only N (or other
per-frame settings) reuses the cached LoRA and inversion/flow of the same photos.
"""
from __future__ import annotations

import hashlib
import shutil
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np

from dreammover.config import INVERSION_FIELDS, InterpolationConfig
from dreammover.events import Cancelled, Event
from dreammover.presets import ClipPreset, render_clip

from .svd_jobs import SVDJobs, SVDKeyframeConfig, job_config, svd_stage_weights

Report = Callable[[Event], None]


def save_frames(frames, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png", compress_level=1)


def load_frames(folder: Path) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))]


def stage_weights(config: InterpolationConfig, reuse_pair: bool) -> dict[str, float]:
    """Expected cost per stage in UNet image-evaluations (a LoRA step is forward + backward, about 3)."""
    n, k, s = config.num_frames, config.frames_per_batch, config.inversion_steps
    k = k if isinstance(k, int) else n  # 'auto' is decided on the device at denoise time; one chunk is the estimate
    chunks = [min(k, n - i) for i in range(0, n, k)]
    pair = {"lora": 6.0 * config.lora_steps * config.lora, "inversion": 2.0 * s + 2, "flow": 1.0}
    return {**({} if reuse_pair else pair), "denoise": float(sum((2 + c) * s for c in chunks)),
            "decode": n + 2.0, "encoding": 0.5 * (n + 2)}


class LocalBackend:
    """Runs jobs in this process on one loaded DreamMover; keeps the last few pairs' LoRA + PairState.

    With `svd` (an SVDJobs), jobs whose settings say backend=svd run on the SVD keyframe backend instead.
    """

    def __init__(self, dm, keep_pairs: int = 2, svd: SVDJobs | None = None):
        self.dm, self.keep, self.svd = dm, keep_pairs, svd
        self.pairs: OrderedDict[str, tuple] = OrderedDict()
        self.unet_calls = 0  # every UNet forward of this backend (tests check re-renders add none)
        self._hook = dm.components.unet.register_forward_hook(
            lambda *a: setattr(self, "unet_calls", self.unet_calls + 1))

    def close(self) -> None:
        self._hook.remove()

    def reuses_pair(self, folder: Path, config: InterpolationConfig) -> bool:
        if isinstance(config, SVDKeyframeConfig):
            return False
        return self._key(folder, config) in self.pairs

    def _key(self, folder: Path, config: InterpolationConfig) -> str:
        h = hashlib.sha256()
        for name in ("in0.png", "in1.png"):
            h.update((folder / name).read_bytes())
        h.update(repr(sorted(config.subset(INVERSION_FIELDS).items())).encode())
        return h.hexdigest()

    def run(self, folder: Path, config: InterpolationConfig, report: Report) -> tuple[list[np.ndarray], dict]:
        """Steps 0-12 with the library's step methods (as `interpolate` does), the pair part cached."""
        from dreammover.profiling import StageProfile

        if isinstance(config, SVDKeyframeConfig):
            if self.svd is None:
                raise RuntimeError("this studio has no SVD model: start it with --svd-model")
            return self.svd.run(folder, config, report)
        dm, profile = self.dm, StageProfile(self.dm.device)
        images = dm.prepare(folder / "in0.png", folder / "in1.png", config)
        key = self._key(folder, config)
        if key in self.pairs:
            lora, state = self.pairs[key]
            self.pairs.move_to_end(key)
            dm.use_lora(lora, config.lora_rank)
        else:
            posterior, emb = dm.encode_posterior(images), dm.encode_prompt(config.prompt)
            z0 = posterior[0] * dm.components.vae_scale  # one VAE pass for z0 and the fit's sampled views
            lora = None
            with profile.stage("lora"):
                if config.lora and config.lora_steps > 0:
                    lora, _ = dm.fit_lora(z0, emb, config, images=images, posterior=posterior, on_event=report)
                    profile.count_unet(z0.shape[0] * config.lora_steps)
                else:
                    dm.use_lora(None, config.lora_rank)
            state = dm.pair_state(images, config, profile, encoded=(z0, emb), on_event=report)
            self.pairs[key] = (lora, state)
            while len(self.pairs) > self.keep:
                self.pairs.popitem(last=False)
        with profile.stage("denoise"):
            latents = dm.denoise(state, config.deltas, config, profile, on_event=report)
        with profile.stage("decode"):
            frames = dm.decode(latents, config.decode_batch, on_event=report)
        if config.keep_inputs:
            frames[0], frames[1] = images[0], images[1]
        return [frames[0], *frames[2:], frames[1]], profile.as_dict()

    def preview(self, latent) -> np.ndarray:
        """One VAE decode of one clean-latent estimate: the cheap preview."""
        return self.dm.decode(latent)[0]

    def release(self) -> None:
        import torch

        if self.dm.device.type == "cuda":
            torch.cuda.empty_cache()


class Runner:
    """Takes queued jobs from the store, one at a time, and keeps their live state (progress, ETA) there."""

    def __init__(self, store, backend, preview_every: int = 2):
        self.store, self.backend, self.preview_every = store, backend, preview_every
        self._wake, self._stop = threading.Event(), threading.Event()
        self._cancel: set[str] = set()
        self._thread: threading.Thread | None = None

    def start(self) -> "Runner":
        self.store.requeue_interrupted()
        self._thread = threading.Thread(target=self._loop, name="studio-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop taking jobs and wait for the worker; a job still running is queued again on the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        getattr(self.backend, "close", lambda: None)()

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> bool:
        """Queued: cancelled now. Running: stops at the next step. Finished: False."""
        job = self.store.get(job_id)
        if job is None or job["state"] not in ("queued", "running"):
            return False
        self._cancel.add(job_id)
        if job["state"] == "queued":
            self.store.update(job_id, state="cancelled", stage="cancelled", finished=time.time())
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
        config = job_config(job["settings"])
        preset = ClipPreset(**job["preset"])
        source = store.get(job["source"]) if job["source"] else None
        reencode = bool(source and source["settings"] == job["settings"]
                        and (store.folder(source["id"]) / "frames").is_dir())
        reuse = reencode or getattr(self.backend, "reuses_pair", lambda *a: False)(folder, config)
        weights = ({"encoding": 1.0} if reencode else svd_stage_weights(config)
                   if isinstance(config, SVDKeyframeConfig) else stage_weights(config, reuse))
        order = list(weights)
        total, started = sum(weights.values()), time.time()
        store.update(job_id, state="running", stage=order[0], progress=0.0, started=started, eta=None)
        last = {"t": 0.0}

        def report(ev: Event) -> None:
            if job_id in self._cancel:
                raise Cancelled(job_id)
            if ev.stage not in weights:
                return
            done = sum(weights[s] for s in order[:order.index(ev.stage)])
            p = min(0.999, (done + weights[ev.stage] * ev.step / max(1, ev.total)) / total)
            fresh = ev.latents is not None and (ev.step % self.preview_every == 0 or ev.step == ev.total)
            if fresh and self._preview(folder, ev):
                last["previews"] = last.get("previews", 0) + 1
            now = time.time()
            if now - last["t"] > 0.2 or ev.step == ev.total or fresh:  # throttle database writes
                last["t"] = now
                eta = (now - started) * (1 - p) / p if p > 0.02 else None
                store.update(job_id, stage=ev.stage, progress=p, eta=eta, previews=last.get("previews", 0))

        try:
            if reencode:
                shutil.copytree(store.folder(source["id"]) / "frames", folder / "frames", dirs_exist_ok=True)
                frames, stats = load_frames(folder / "frames"), {"seconds": {}, "unet_evals": {}}
            else:
                frames, stats = self.backend.run(folder, config, report)
                save_frames(frames, folder / "frames")
            report(Event("encoding", 0, 1))
            clip = render_clip(frames, preset, folder / "clip")
            save_thumb(frames[len(frames) // 2], folder / "thumb.jpg")
            store.update(job_id, state="done", stage="done", progress=1.0, eta=0.0, finished=time.time(),
                         frames=len(frames), unet_evals=stats["unet_evals"], seconds=stats["seconds"],
                         error=None)
            del clip
        except Cancelled:
            store.update(job_id, state="cancelled", stage="cancelled", finished=time.time(), eta=None)
        except Exception as err:  # a failed job must not stop the queue; its error is shown in words
            traceback.print_exc()
            store.update(job_id, state="failed", stage="failed", finished=time.time(), eta=None,
                         error=f"{type(err).__name__}: {err}"[:500])
        finally:
            self._cancel.discard(job_id)
            getattr(self.backend, "release", lambda: None)()

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
