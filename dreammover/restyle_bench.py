"""`dreammover bench --restyle`: DreamMotion's full method and its ablations on one clip, timed and scored.

Variants (the paper's ablation table): the full method, without S-SSM and T-SSM, without T-SSM, without the mask.
Per variant: seconds per iteration, peak memory (CUDA: max allocated; CPU: the process's peak RSS sampled
during the edit), motion fidelity on OpenCV tracks (labelled; CoTracker when its weights are given), and, only
where local weights are given, CLIP text alignment / frame consistency and frame LPIPS under both readings.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .evaluation import restyle_metrics as M

VARIANTS = {  # name -> RestyleConfig fields changed from the full method
    "full": {},
    "no S-SSM/T-SSM": {"spatial_ssm": False, "temporal_ssm": False},
    "no T-SSM": {"temporal_ssm": False},
    "no mask": {"use_mask": False},
}
NO_WEIGHTS = "n/a (no weights)"
NO_TRACKS = "n/a (no point tracked through the whole clip)"
# DreamMotion's published figures (Zeroscope, CoTracker tracks): text, frame consistency, motion fidelity, LPIPS.
PAPER = {"full": (0.8209, 0.9726, 0.9259, 0.3042), "no S-SSM/T-SSM": (0.8202, 0.9648, 0.8426, 0.3247),
         "no T-SSM": (0.8114, 0.9567, 0.9011, 0.3186), "no mask": (0.8180, 0.9695, 0.8653, 0.3416)}
GENERATED_SOURCE, GENERATED_TARGET = "a red ball rolling over a blue bar", "a golden ball rolling over a blue bar"


@dataclass
class RestyleBenchSettings:
    """What one restyle bench runs: the model, the clip (given or generated), the prompts, box and weights."""

    model: str = "tiny-t2v"
    steps: int = 200
    clip: Path | None = None
    source_prompt: str | None = None
    target_prompt: str | None = None
    box: tuple[int, int, int, int] | None = None
    frames: int = 8
    width: int = 64
    height: int = 64
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    clip_model: Path | None = None
    lpips_weights: str | None = None
    lpips_lin: str | None = None
    lpips_arch: str = "alex"
    cotracker_weights: Path | None = None


@dataclass
class RestyleBenchResult:
    rows: dict[str, dict[str, object]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def moving_scene(n: int, height: int, width: int) -> tuple[list[np.ndarray], tuple[int, int, int, int]]:
    """A generated clip: a textured backdrop panning slowly, a ball moving along an arc, a bar turning; and the
    box that holds the ball in every frame (the region to restyle)."""
    import cv2

    rng = np.random.default_rng(0)
    tex = cv2.resize(rng.random((height // 4 + 2, width // 4 + 4, 3)).astype(np.float32), (width + 16, height + 8),
                     interpolation=cv2.INTER_CUBIC)
    back = (60 + 120 * tex.clip(0, 1)).astype(np.uint8)
    r, frames, centres = max(3, min(height, width) // 8), [], []
    for k in range(n):
        t = k / max(1, n - 1)
        im = np.ascontiguousarray(back[4:4 + height, int(8 * t):int(8 * t) + width])
        c = (int(width * (0.25 + 0.5 * t)), int(height * (0.35 + 0.15 * math.sin(math.pi * t))))
        bar = cv2.boxPoints(((width * 0.5, height * 0.78), (width * 0.6, max(2, height * 0.08)), 25 * t))
        cv2.fillPoly(im, [bar.astype(np.int32)], (40, 60, 170), lineType=cv2.LINE_AA)
        cv2.circle(im, c, r, (220, 60, 40), -1, lineType=cv2.LINE_AA)
        frames.append(im)
        centres.append(c)
    xs, ys = [c[0] for c in centres], [c[1] for c in centres]
    x0, y0 = max(0, min(xs) - r - 1), max(0, min(ys) - r - 1)
    return frames, (x0, y0, min(width, max(xs) + r + 2) - x0, min(height, max(ys) + r + 2) - y0)


class PeakMemory:
    """Peak memory of one edit: CUDA max allocated, or the process RSS sampled every 10 ms on a CPU."""

    def __init__(self, device):
        self.device, self.peak, self._stop = device, 0, threading.Event()
        self.label = "CUDA max allocated" if device.type == "cuda" else "CPU peak RSS"

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self.rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = int(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self.rss())


def load_scorers(s: RestyleBenchSettings) -> tuple[object, object, Callable | None]:
    """(CLIP scorer, LPIPS, CoTracker tracker), each None without weights; bad weights raise before any edit."""
    from .evaluation.perceptual import load_lpips

    clip = M.load_clip_scorer(s.clip_model) if s.clip_model else None
    lpips = load_lpips(s.lpips_weights, s.lpips_lin, s.lpips_arch) if s.lpips_weights else None
    tracker = M.cotracker_tracks(s.cotracker_weights) if s.cotracker_weights else None
    return clip, lpips, tracker


def _fmt(v, missing: str = "nan") -> str:
    return missing if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def score(source, edit, prompt: str, clip, lpips, tracker) -> dict[str, str]:
    """The metric columns of one edit (labelled; "n/a (no weights)" where no local weights were given)."""
    lp = f"LPIPS edit-vs-source ({lpips.name})" if lpips else "LPIPS edit-vs-source"
    lc = f"LPIPS consecutive ({lpips.name})" if lpips else "LPIPS consecutive"
    return {
        M.MOTION_OPENCV: _fmt(M.motion_fidelity(source, edit), NO_TRACKS),
        M.MOTION_COTRACKER: _fmt(M.motion_fidelity(source, edit, tracker), NO_TRACKS) if tracker else NO_WEIGHTS,
        "CLIP text alignment": _fmt(M.clip_text_alignment(clip, edit, prompt)) if clip else NO_WEIGHTS,
        "CLIP frame consistency": _fmt(M.clip_frame_consistency(clip, edit)) if clip else NO_WEIGHTS,
        lp: _fmt(M.lpips_to_source(lpips, edit, source)) if lpips else NO_WEIGHTS,
        lc: _fmt(M.lpips_consecutive(lpips, edit)) if lpips else NO_WEIGHTS,
    }


def run_restyle_bench(s: RestyleBenchSettings, frames: list[np.ndarray], mask, model,
                      log: Callable[[str], None] = lambda m: None) -> RestyleBenchResult:
    """Every variant on `frames` with the loaded `model`; scorers from the settings' weights."""
    import torch

    from .restyle import RestyleConfig, restyle, restyle_preflight

    clip, lpips, tracker = load_scorers(s)
    device = torch.device(model.device) if not isinstance(model.device, torch.device) else model.device
    out = RestyleBenchResult()
    plan = restyle_preflight(model, len(frames), frames[0].shape[0], frames[0].shape[1],
                             RestyleConfig(steps=s.steps, seed=s.seed))
    log(f"preflight: {plan.summary()}")
    out.notes.append(f"preflight: {plan.summary()}")
    for name, changes in VARIANTS.items():
        if name == "no mask" and mask is None:
            out.rows[name] = {"s/iter": "= full (no box or mask given)"}
            continue
        config = RestyleConfig(steps=s.steps, seed=s.seed, **changes)
        calls = {"n": 0, "total": 0}

        def progress(done: int, total: int) -> None:
            calls["n"], calls["total"] = calls["n"] + 1, total

        log(f"restyle bench: {name} ({s.steps} steps) ...")
        with PeakMemory(device) as mem:
            start = time.perf_counter()
            result = restyle(model, frames, s.source_prompt, s.target_prompt, mask, config, progress)
            seconds = time.perf_counter() - start
        row = {"s/iter": f"{seconds / max(1, calls['n']):.3f}",
               f"peak memory ({mem.label})": f"{mem.peak / 2**20:.0f} MiB"}
        row.update(score(frames, result.frames, s.target_prompt, clip, lpips, tracker))
        out.rows[name] = row
    out.columns = list(dict.fromkeys(c for r in out.rows.values() for c in r))
    out.notes.append("paper (Zeroscope, CoTracker tracks; text / frame consistency / motion fidelity / LPIPS): " +
                     "; ".join(f"{k} {'/'.join(str(v) for v in vals)}" for k, vals in PAPER.items()))
    return out


def format_table(result: RestyleBenchResult) -> str:
    """A Markdown table: one row per variant, one column per figure."""
    cols = ["variant"] + result.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for name, row in result.rows.items():
        lines.append("| " + " | ".join([name] + [str(row.get(c, "")) for c in result.columns]) + " |")
    return "\n".join(lines + [""] + result.notes)


def settings_from_options(pairs_dir, model, steps, clip, source_prompt, target_prompt, box, frames, size, seed,
                          device, dtype, clip_model, lpips_weights, lpips_lin, lpips_arch,
                          cotracker_weights) -> RestyleBenchSettings:
    """`bench --restyle`'s options -> settings; the defaults depend on the model (tiny-t2v: a quick CPU run)."""
    from .cli import fail
    from .restyle import DEFAULT_T2V, RestyleInputError, parse_box

    if pairs_dir is not None:
        fail("--restyle takes no PAIRS_DIR: give --clip IN.mp4 (or nothing, for a generated clip)")
    model = model or DEFAULT_T2V
    tiny = model == "tiny-t2v"
    try:
        parsed = parse_box(box) if box else None
    except RestyleInputError as err:
        fail(str(err))
    width = size or (64 if tiny else 576)  # Zeroscope's native 576x320 (16:9 rounded to the VAE's 8)
    return RestyleBenchSettings(
        model=model, steps=steps or (20 if tiny else 200), clip=clip, source_prompt=source_prompt,
        target_prompt=target_prompt, box=parsed, frames=frames or (8 if tiny else 16), width=width,
        height=width if tiny else (width * 5 // 9) // 8 * 8, seed=seed or 0, device=device, dtype=dtype,
        clip_model=clip_model, lpips_weights=lpips_weights, lpips_lin=lpips_lin, lpips_arch=lpips_arch,
        cotracker_weights=cotracker_weights)


def bench_command(s: RestyleBenchSettings, output: Path | None, quiet: bool) -> None:
    """The CLI's `bench --restyle`: every bad input is one line and exit 2 before the model loads."""
    import json

    import typer

    from .cli import fail
    from .restyle import (ModelLoadError, RestyleConfig, RestyleInputError, check_restyle_inputs, load_t2v,
                          mask_from_box)

    log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
    if s.clip is not None:
        from .video import read_video

        if s.target_prompt is None or not s.target_prompt.strip():
            fail("--clip needs --target-prompt (and usually --source-prompt): what the edit should look like")
        if not s.clip.is_file():
            fail(f"{s.clip}: no such clip file")
        try:
            frames = read_video(s.clip)
        except Exception as err:  # unreadable: the reader's own words
            fail(f"{s.clip}: cannot read the clip ({' '.join(str(err).split())[:200]})")
        if not frames:
            fail(f"{s.clip}: no frames could be read (not a video, or an empty one)")
        box = s.box
    else:
        frames, box = moving_scene(s.frames, s.height, s.width)
        box = s.box or box
        s.source_prompt = GENERATED_SOURCE if s.source_prompt is None else s.source_prompt
        s.target_prompt = s.target_prompt or GENERATED_TARGET
    s.source_prompt = s.source_prompt or ""
    try:
        mask = mask_from_box(box, len(frames), *frames[0].shape[:2]) if box and frames else None
        check_restyle_inputs(frames, s.source_prompt, s.target_prompt, mask, RestyleConfig(steps=s.steps),
                             max_frames=10_000)
        load_scorers(s)  # bad weights: said now, not after the edits
    except (RestyleInputError, FileNotFoundError, RuntimeError, OSError, ValueError) as err:
        fail(" ".join(str(err).split()))
    if output is not None:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            fail(f"{output}: cannot create the report folder ({err})")
    log(f"restyle bench: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, model {s.model!r}, "
        f"{s.steps} steps, box {box}, source {s.source_prompt!r} -> target {s.target_prompt!r}")
    try:
        model = load_t2v(s.model, device=s.device, dtype=s.dtype)
    except ModelLoadError as err:
        fail(str(err))
    result = run_restyle_bench(s, frames, mask, model, log)
    table = format_table(result)
    typer.echo(table)
    if output is not None:
        (output / "restyle.md").write_text(table + "\n")
        (output / "restyle.json").write_text(json.dumps({"rows": result.rows, "notes": result.notes}, indent=1))
        log(f"wrote {output / 'restyle.md'}")
