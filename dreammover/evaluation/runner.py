"""The benchmark loop: every method and ablation on every pair (or existing clips), scored; bad inputs are skipped."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import InterpolationConfig
from ..images import ImageInputError, cover_crop, load_image, prepare_pair
from ..models import DEFAULT_MODEL
from .baselines import ABLATIONS, EXTRA_ABLATIONS, METHODS, ablation_config, make_method
from .metrics import WE_SCALE, match_size, middle_indices, score_clip
from .progress import BenchProgress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
CLIP_SUFFIXES = (".mp4", ".webm", ".gif", ".avi", ".mov", ".mkv")
CONTACT_DELTAS = (0.25, 0.5, 0.75)
CURVE = "hf-curve"


@dataclass
class BenchSettings:
    """Everything `dreammover bench` was asked for; defaults are a quick but faithful run."""

    pairs_dir: Path
    out_dir: Path
    methods: tuple[str, ...] = METHODS
    ablations: tuple[str, ...] = ()
    clips_dir: Path | None = None
    model: str = DEFAULT_MODEL
    device: str | None = None
    dtype: str | None = None
    config: InterpolationConfig = field(default_factory=InterpolationConfig)
    fps: float = 10.0
    we_scale: float = WE_SCALE
    flow_method: str = "dis"
    lpips_weights: str | None = None
    lpips_lin: str | None = None
    lpips_arch: str = "alex"
    fid_weights: str | None = None
    hf_pairs: int = 1


@dataclass
class BenchResult:
    """Rows of scores, per-method FID, skipped metrics and problems (with reasons), and what the report draws."""

    rows: list[dict] = field(default_factory=list)
    fid: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)      # metric -> why it is missing
    problems: list[dict] = field(default_factory=list)         # {"pair", "method", "error"}
    contact: dict[str, dict] = field(default_factory=dict)     # pair -> {"inputs": (a, b), method: [frames]}
    curves: dict[str, dict] = field(default_factory=dict)      # pair -> fusion -> [(t, ratio)]
    metric_names: dict[str, str] = field(default_factory=dict)


def _image_in(folder: Path, stem: str) -> Path | None:
    hits = sorted(p for p in folder.iterdir() if p.stem == stem and p.suffix.lower() in IMAGE_SUFFIXES)
    return hits[0] if hits else None


def find_pairs(pairs_dir: Path) -> tuple[list[tuple[str, Path, Path]], list[dict]]:
    """Sub-folders holding `0.*` and `1.*` images; folders missing one are returned as problems."""
    if not pairs_dir.is_dir():
        raise FileNotFoundError(f"{pairs_dir}: not a folder of pairs")
    pairs, problems = [], []
    for d in sorted(p for p in pairs_dir.iterdir() if p.is_dir()):
        a, b = _image_in(d, "0"), _image_in(d, "1")
        if a is None or b is None:
            problems.append({"pair": d.name, "method": "-", "error": "needs images 0.* and 1.*"})
        else:
            pairs.append((d.name, a, b))
    return pairs, problems


def nearest_frames(frames: list[np.ndarray], deltas=CONTACT_DELTAS) -> list[np.ndarray]:
    """Frames whose time i/(n-1) is closest to each delta (frame 0 is I0, frame n-1 is I1)."""
    n = len(frames)
    return [frames[int(round(d * (n - 1)))] for d in deltas]


class _Metrics:
    """LPIPS and FID models, loaded once; a metric whose weights are missing is skipped with its reason."""

    def __init__(self, s: BenchSettings, result: BenchResult):
        from .perceptual import WeightsUnavailable, load_fid, load_lpips

        self.lpips = self.fid = None
        try:
            self.lpips = load_lpips(s.lpips_weights, s.lpips_lin, s.lpips_arch)
            result.metric_names["lpips"] = self.lpips.name
        except (WeightsUnavailable, ValueError) as err:
            result.skipped["lpips"] = str(err)
        try:
            self.fid = load_fid(s.fid_weights)
            result.metric_names["fid"] = self.fid.name
        except (WeightsUnavailable, ValueError) as err:
            result.skipped["fid"] = str(err)
        self.real: list[np.ndarray] = []                 # FID's real set: both inputs of every pair
        self.fake: dict[str, list[np.ndarray]] = {}      # per method: the two middle frames of every pair

    def add(self, method: str, frames, inputs) -> None:
        if self.fid is None:
            return
        a, b = middle_indices(len(frames))
        self.fake.setdefault(method, []).extend([frames[a], frames[b]])
        self.real.extend(inputs)

    def finish(self, result: BenchResult) -> None:
        if self.fid is None:
            return
        from .perceptual import frechet_distance

        real = self._unique(self.real)
        feats_real = self.fid(real) if len(real) >= 2 else None
        for method, imgs in self.fake.items():
            if feats_real is None or len(imgs) < 2:
                result.skipped["fid"] = "FID needs at least two images per set"
                continue
            result.fid[method] = frechet_distance(feats_real, self.fid(imgs))
        if len(real) < 50:
            result.metric_names["fid_note"] = (f"FID over {len(real)} real images is a plumbing figure, "
                                               "not comparable with the paper (which uses the whole benchmark)")

    @staticmethod
    def _unique(imgs: list[np.ndarray]) -> list[np.ndarray]:
        seen, out = set(), []
        for im in imgs:  # each method adds the inputs again; count every input image once
            key = (im.shape, hash(im.tobytes()))
            if key not in seen:
                seen.add(key)
                out.append(im)
        return out


def _labels(s: BenchSettings) -> list[tuple[str, str, str | None]]:
    """(row label, method, ablation) for every run the settings ask for."""
    out = [(m, m, None) for m in s.methods]
    out += [(f"dreammover-{a}", "dreammover", a) for a in s.ablations]
    return out


def run_bench(s: BenchSettings, log: Callable[[str], None] = print) -> BenchResult:
    """Run (or read) every clip, score it, and collect what the report needs; never aborts on one bad pair."""
    from ..video import read_video, write_video

    result = BenchResult()
    for a in s.ablations:
        if a not in ABLATIONS and a not in EXTRA_ABLATIONS:
            raise ValueError(f"unknown ablation {a!r}: use one of {', '.join([*ABLATIONS, *EXTRA_ABLATIONS])}")
    for m in s.methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}: use one of {', '.join(METHODS)}")
    pairs, result.problems = find_pairs(s.pairs_dir)
    metrics = _Metrics(s, result)
    labels = _labels(s)
    dm = _load_model(s, result, log) if any(m == "dreammover" for _, m, _ in labels) else None
    runs = [(label, method, abl) for label, method, abl in labels if method != "dreammover" or dm is not None]
    clips = {name: _existing_clips(s.clips_dir / name) if s.clips_dir else [] for name, _, _ in pairs}
    progress = BenchProgress(_plan(pairs, runs, clips, s, dm is not None), log)
    _log_plan(s, pairs, runs, clips, progress.total, log)
    for name, p0, p1 in pairs:
        try:
            im0, im1 = load_image(p0), load_image(p1)
        except ImageInputError as err:
            result.problems.append({"pair": name, "method": "-", "error": str(err)})
            log(f"[{name}] skipped: {err}")
            progress.drop(name)
            continue
        for label, method, abl in runs + [(c.stem, None, c) for c in clips[name]]:
            progress.start(name, label)
            detail = "failed"
            try:
                if method is None:  # an existing clip: score it against the inputs at its own size
                    frames = read_video(abl)
                    if len(frames) < 3:
                        raise ValueError(f"{abl}: {len(frames)} frames decoded, need at least 3")
                    inputs = (_cover(im0, frames[0]), _cover(im1, frames[0]))
                    row = {"seconds": {}, "unet_evals": {}, "clip": str(abl)}
                else:
                    config = ablation_config(s.config, abl)
                    res = make_method(method, dm, s.flow_method).interpolate(im0, im1, config)
                    frames = res.frames
                    inputs = prepare_pair(im0, im1, config.size, config.resize_policy)
                    clip = write_video(frames, s.out_dir / "clips" / name / f"{label}.mp4", fps=s.fps)
                    row = {"seconds": res.seconds, "unet_evals": res.unet_evals, "clip": str(clip)}
                sc = score_clip(frames, *inputs, scale=s.we_scale, flow_method=s.flow_method, lpips=metrics.lpips)
                metrics.add(label, frames, inputs)
                result.rows.append({"pair": name, "method": label, "frames": len(frames),
                                    "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", **sc.as_dict(),
                                    # an existing clip has no timings: None, not a misleading 0 s
                                    "seconds_total": sum(row["seconds"].values()) if row["seconds"] else None,
                                    **row})
                contact = result.contact.setdefault(name, {"inputs": inputs})
                contact[label] = nearest_frames(frames)
                detail = f"WE {sc.we:.4f}  WE_mid {sc.we_mid:.4f}  HF {sc.hf_ratio:.3f}"
                if label == "dreammover":  # right now the pair's LoRA is still loaded: the curve reuses it
                    progress.done(name, label, detail)
                    detail = None
                    _curve(dm, name, im0, im1, s, result, lora_active=True, progress=progress)
            except Exception as err:  # one failing run is reported and the bench goes on
                result.problems.append({"pair": name, "method": label, "error": f"{type(err).__name__}: {err}"})
                log(f"[{name}] {label} failed: {err}\n{traceback.format_exc(limit=3)}")
            if detail is not None:
                progress.done(name, label, detail)
        if dm is not None and "dreammover" not in s.methods:  # ablations only: the curve fits its own LoRA
            _curve(dm, name, im0, im1, s, result, lora_active=False, progress=progress)
    metrics.finish(result)
    if metrics.lpips is None and "lpips" not in result.skipped:
        result.skipped["lpips"] = "no LPIPS model"
    return result


def _curve(dm, name: str, im0, im1, s: BenchSettings, result: BenchResult, lora_active: bool,
           progress: BenchProgress | None = None) -> None:
    """Fig. 5c curve for the first `hf_pairs` pairs; a failure is a reported problem, not an abort."""
    if len(result.curves) >= s.hf_pairs:
        return
    if progress is not None:
        progress.start(name, CURVE)
    try:
        from .curves import hf_energy_curves

        result.curves[name] = hf_energy_curves(dm, im0, im1, s.config, lora_active=lora_active)
    except Exception as err:
        result.problems.append({"pair": name, "method": CURVE, "error": f"{type(err).__name__}: {err}"})
    if progress is not None:
        progress.done(name, CURVE, "" if name in result.curves else "failed")


def _plan(pairs, runs, clips, s: BenchSettings, with_model: bool) -> list[tuple[str, str, str]]:
    """(pair, label, kind) of every run in order; kind groups runs of similar cost for the ETA."""
    plan = []
    for i, (name, _, _) in enumerate(pairs):
        plan += [(name, label, method) for label, method, _ in runs]
        if with_model and i < s.hf_pairs:
            plan.append((name, CURVE, CURVE))
        plan += [(name, c.stem, "clip") for c in clips[name]]
    return plan


def _log_plan(s: BenchSettings, pairs, runs, clips, total: int, log) -> None:
    """Say up front what will run and how heavy one DreamMover run is."""
    from ..preflight import unet_passes

    what = ", ".join(label for label, _, _ in runs) or "no generated clips"
    n_clips = sum(len(v) for v in clips.values())
    log(f"bench: {len(pairs)} pairs x ({what}){f' + {n_clips} existing clips' if n_clips else ''}: {total} runs")
    if any(method == "dreammover" for _, method, _ in runs):
        c = s.config
        passes = unet_passes(c)
        log(f"each DreamMover run: {c.size} px, {c.num_frames} frames, {c.lora_steps} LoRA steps, "
            f"{sum(passes.values())} UNet passes; the ETA follows once each kind of run was timed")


def _cover(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    """An input brought to a clip's frame the way the pipeline's default policy does (centre crop, resize)."""
    h, w = like.shape[:2]
    return match_size(cover_crop(img, h, w), like)


def _existing_clips(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in CLIP_SUFFIXES and not p.name.startswith("."))


def _load_model(s: BenchSettings, result: BenchResult, log):
    """The DreamMover model once for all pairs; a load failure skips its rows, not the baselines."""
    import torch

    from ..models import ModelLoadError
    from ..pipeline import DreamMover

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, None: None}.get(s.dtype, s.dtype)
    try:
        log(f"loading model {s.model!r} ...")
        return DreamMover.from_pretrained(s.model, device=s.device, dtype=dtype)
    except (ModelLoadError, OSError, ValueError) as err:
        result.problems.append({"pair": "*", "method": "dreammover", "error": str(err)})
        log(f"model unavailable, DreamMover rows skipped: {err}")
        return None
