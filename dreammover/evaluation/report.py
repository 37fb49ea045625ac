"""Bench outputs: metrics.json / metrics.csv, contact sheets, plots (matplotlib, Agg) and report.md."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import MappingProxyType

import numpy as np

from .runner import BenchResult, BenchSettings

METRICS = (("we", "WE ↓"), ("we_mid", "WE_mid ↓"), ("lpips", "LPIPS ↓"), ("hf_ratio", "HF ratio (1 = input)"))
NOT_COMPUTED = "not computed"
PAPER_TABLE1 = MappingProxyType({"we": 0.2069, "we_mid": 0.3687})  # DreamMover's row of the paper's Table 1


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _fmt(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _methods(result: BenchResult) -> list[str]:
    return list(dict.fromkeys(r["method"] for r in result.rows))


def _mean(result: BenchResult, method: str, key: str):
    vals = [r[key] for r in result.rows if r["method"] == method and r[key] is not None and not math.isnan(r[key])]
    return float(np.mean(vals)) if vals else None


def write_tables(result: BenchResult, out: Path, settings: BenchSettings) -> tuple[Path, Path]:
    """metrics.json (everything, nested) and metrics.csv (one flat row per pair x method)."""
    meta = {"we_scale": settings.we_scale, "we_pixel_range": "[0, 1]", "flow": settings.flow_method,
            "config": settings.config.model_dump(), "model": settings.model}
    jpath = out / "metrics.json"
    jpath.write_text(json.dumps({"meta": meta, "rows": result.rows, "fid": result.fid, "skipped": result.skipped,
                                 "metric_models": result.metric_names, "problems": result.problems,
                                 "hf_curves": result.curves}, indent=2, default=str))
    stages = sorted({k for r in result.rows for k in r["seconds"]})
    cols = ["pair", "method", "frames", "size", "we", "we_mid", "lpips", "hf_ratio", "seconds_total"]
    cpath = out / "metrics.csv"
    with cpath.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols + [f"sec_{s}" for s in stages] + ["unet_evals", "clip"])
        for r in result.rows:
            w.writerow([r[c] for c in cols] + [r["seconds"].get(s, "") for s in stages]
                       + [sum(r["unet_evals"].values()), r["clip"]])
    return jpath, cpath


def contact_sheet(pair: str, entry: dict, path: Path) -> Path:
    """One row per method: input 0, frames at delta = 1/4, 1/2, 3/4, input 1 (all shown at one size)."""
    plt = _plt()
    a, b = entry["inputs"]
    methods = [k for k in entry if k != "inputs"]
    fig, axes = plt.subplots(len(methods), 5, figsize=(10, 2.1 * len(methods) + 0.4), squeeze=False)
    titles = ["input 0", "δ = ¼", "δ = ½", "δ = ¾", "input 1"]
    for i, m in enumerate(methods):
        for j, img in enumerate([a, *entry[m], b]):
            ax = axes[i][j]
            ax.imshow(img, interpolation="nearest" if img.shape[0] < 128 else "antialiased")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(titles[j], fontsize=9)
            if j == 0:
                ax.set_ylabel(m, fontsize=9)
    fig.suptitle(pair, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_metrics(result: BenchResult, path: Path) -> Path:
    """Bar per method (mean over pairs) with every pair as a dot, one panel per metric."""
    plt = _plt()
    methods = _methods(result)
    keys = [(k, t) for k, t in METRICS if any(r[k] is not None for r in result.rows)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 3.6), squeeze=False)
    for ax, (k, title) in zip(axes[0], keys):
        means = [_mean(result, m, k) for m in methods]
        # A missing metric gets no bar (a 0 bar would read as the best score on a "lower is better" panel).
        shown = [x for x, v in enumerate(means) if v is not None]
        ax.bar(shown, [means[x] for x in shown], color="#8fb3d9")
        for x, m in enumerate(methods):
            if means[x] is None:
                ax.text(x, 0, NOT_COMPUTED, rotation=90, ha="center", va="bottom", fontsize=7, color="#777777",
                        transform=ax.get_xaxis_transform())
                continue
            ys = [r[k] for r in result.rows if r["method"] == m and r[k] is not None and not math.isnan(r[k])]
            ax.scatter([x] * len(ys), ys, color="#1f3b5c", s=12, zorder=3)
        if k in PAPER_TABLE1:
            ax.axhline(PAPER_TABLE1[k], color="#c0392b", ls="--", lw=1, label="paper (DreamMover)")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_timings(result: BenchResult, path: Path) -> Path | None:
    """Stacked mean seconds per stage for each generated method (read clips have no timings)."""
    methods = [m for m in _methods(result) if any(r["seconds"] for r in result.rows if r["method"] == m)]
    if not methods:
        return None
    plt = _plt()
    stages = list(dict.fromkeys(s for r in result.rows for s in r["seconds"]))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(methods) + 3), 3.8))
    bottom = np.zeros(len(methods))
    cmap = plt.get_cmap("tab20")
    for i, st in enumerate(stages):
        vals = np.array([np.mean([r["seconds"].get(st, 0.0) for r in result.rows if r["method"] == m])
                         for m in methods])
        ax.bar(range(len(methods)), vals, bottom=bottom, label=st, color=cmap(i % 20))
        bottom += vals
    for x, total in enumerate(bottom):  # baselines are orders of magnitude faster: print every total
        ax.text(x, total, f"{total:.3g} s", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(methods)), methods, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("seconds per pair (mean)")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title("time per stage", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_hf_curves(result: BenchResult, path: Path) -> Path | None:
    """Fig. 5c: HF energy ratio of the delta = 1/2 frame's clean estimate per denoising step, per fusion."""
    if not result.curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    styles = {"two_level": "-", "direct": "--"}
    for pair, curves in result.curves.items():
        for fusion, curve in curves.items():
            steps = range(1, len(curve) + 1)
            ax.plot(steps, [v for _, v in curve], styles.get(fusion, ":"), marker=".", label=f"{pair}: {fusion}")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("denoising step")
    ax.set_ylabel("HF energy / inputs'")
    ax.set_title("high-frequency energy over denoising (Fig. 5c)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: BenchResult, settings: BenchSettings) -> Path:
    """All files of a bench run under settings.out_dir; returns report.md."""
    out = settings.out_dir
    (out / "contact").mkdir(parents=True, exist_ok=True)
    jpath, cpath = write_tables(result, out, settings)
    sheets = {p: contact_sheet(p, e, out / "contact" / f"{p}.png") for p, e in result.contact.items()}
    plots = {}
    if result.rows:
        plots["metrics"] = plot_metrics(result, out / "metrics.png")
    for key, fn in (("timings", plot_timings), ("hf_curves", plot_hf_curves)):
        p = fn(result, out / f"{key}.png")
        if p is not None:
            plots[key] = p
    c = settings.config
    lines = ["# DreamMover benchmark", "",
             f"Pairs: `{settings.pairs_dir}`" + (f"; clips scored from `{settings.clips_dir}`" if settings.clips_dir
                                                 else ""),
             f"Model: `{settings.model}`; size {c.size}, {c.num_frames} in-between frames, LoRA steps "
             f"{c.lora_steps}, {c.inversion_steps}/{c.num_inference_steps} DDIM steps.", "",
             f"WE and WE_mid: masked MSE on [0, 1] pixels × {settings.we_scale:g}, flow: OpenCV "
             f"{settings.flow_method}. Paper Table 1 (DreamMover): WE {PAPER_TABLE1['we']}, "
             f"WE_mid {PAPER_TABLE1['we_mid']}. See docs/evaluation.md for definitions.", "",
             "## Mean over pairs", "",
             "| method | pairs | WE ↓ | WE_mid ↓ | LPIPS ↓ | FID ↓ | HF ratio | s / pair |",
             "|---|---|---|---|---|---|---|---|"]
    for m in _methods(result):
        n = sum(r["method"] == m for r in result.rows)
        lines.append(f"| {m} | {n} | {_fmt(_mean(result, m, 'we'))} | {_fmt(_mean(result, m, 'we_mid'))} | "
                     f"{_fmt(_mean(result, m, 'lpips'))} | {_fmt(result.fid.get(m))} | "
                     f"{_fmt(_mean(result, m, 'hf_ratio'))} | {_fmt(_mean(result, m, 'seconds_total'))} |")
    lines += ["", "## Per pair", "", "| pair | method | frames | WE | WE_mid | LPIPS | HF ratio | s |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['pair']} | {r['method']} | {r['frames']} | {_fmt(r['we'])} | {_fmt(r['we_mid'])} | "
              f"{_fmt(r['lpips'])} | {_fmt(r['hf_ratio'])} | {_fmt(r['seconds_total'])} |" for r in result.rows]
    lines += ["", f"– = {NOT_COMPUTED} (a skipped metric, a failed run, or no timings for an existing clip)."]
    if result.skipped or result.metric_names:
        lines += ["", "## Metric models", ""]
        lines += [f"- {k}: {v}" for k, v in result.metric_names.items()]
        lines += [f"- **{k} skipped**: {v}" for k, v in result.skipped.items()]
    if result.problems:
        lines += ["", "## Problems (skipped, the bench went on)", ""]
        lines += [f"- `{p['pair']}` / {p['method']}: {p['error']}" for p in result.problems]
    lines += ["", "## Plots", ""]
    lines += [f"![{k}]({p.relative_to(out)})" for k, p in plots.items()]
    lines += ["", "## Contact sheets (inputs and δ = ¼, ½, ¾)", ""]
    lines += [f"### {p}\n\n![{p}]({s.relative_to(out)})\n" for p, s in sheets.items()]
    lines += ["", f"Data: [{jpath.name}]({jpath.name}), [{cpath.name}]({cpath.name}); clips under `clips/`.", ""]
    md = out / "report.md"
    md.write_text("\n".join(lines))
    return md
