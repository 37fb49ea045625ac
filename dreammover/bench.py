"""Speed benchmark: per-stage seconds and UNet image-evaluations, and Eq. 5 flow vs a per-pixel loop.

    python -m dreammover.bench                      # tiny model, 64/128/256 px, N = 8/32
    python -m dreammover.bench --model <sd15> --device cuda --sizes 512 --frames 32
"""
from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
import torch
import typer

STAGES = ("prepare", "lora", "encode", "inversion", "features", "flow", "denoise", "decode")


def bench_pipeline(dm, sizes, frames, lora_steps: int = 80, frames_per_batch: int = 8) -> list[dict]:
    """Run the whole method once per (size, N) on the procedural sample pair; one row per run."""
    from .config import InterpolationConfig
    from .sample import sample_pair

    im0, im1 = sample_pair(512)
    rows = []
    for size in sizes:
        for n in frames:
            cfg = InterpolationConfig(size=size, num_frames=n, lora_steps=lora_steps,
                                      frames_per_batch=frames_per_batch)
            start = time.perf_counter()
            r = dm.interpolate(im0, im1, cfg)
            rows.append(dict(size=size, frames=n, total_s=time.perf_counter() - start,
                             seconds=r.seconds, unet_evals=r.unet_evals,
                             peak_mem_gb=_peak_mem_gb(dm.device)))
    return rows


def _peak_mem_gb(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    torch.cuda.reset_peak_memory_stats(device)
    return round(peak, 2)


def bench_flow(hw: int = 64, channels: int = 1280, device: str = "cpu", seed: int = 0) -> dict:
    """Time estimate_flow (one chunked matmul + argmax) against a straightforward per-pixel loop."""
    from .correspondence import estimate_flow, estimate_flow_per_pixel

    g = torch.Generator().manual_seed(seed)
    f0, f1 = (torch.randn(channels, hw, hw, generator=g).to(device) for _ in range(2))
    estimate_flow(f0, f1)  # warm-up
    t = time.perf_counter()
    fast01, _ = estimate_flow(f0, f1)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    slow01 = estimate_flow_per_pixel(f0.cpu(), f1.cpu())
    slow = time.perf_counter() - t
    # Random features have near-ties (gaps ~1e-8) where summation order flips the argmax: count them.
    differ = int((fast01.cpu() != slow01).any(dim=0).sum())
    return dict(features=f"{channels}x{hw}x{hw}", matmul_s=fast, per_pixel_loop_s=slow, speedup=slow / fast,
                differing_pixels=differ, pixels=hw * hw)


def print_table(rows: list[dict]) -> None:
    head = f"{'size':>5} {'N':>3} {'total s':>8} " + " ".join(f"{s:>9}" for s in STAGES)
    print("per-stage seconds (UNet image-evaluations in brackets)")
    print(head)
    for r in rows:
        cells = []
        for s in STAGES:
            sec, ev = r["seconds"].get(s), r["unet_evals"].get(s)
            cells.append(f"{'-' if sec is None else f'{sec:.2f}':>9}" + (f"[{ev}]" if ev else ""))
        mem = f"  peak {r['peak_mem_gb']} GiB" if r.get("peak_mem_gb") is not None else ""
        print(f"{r['size']:>5} {r['frames']:>3} {r['total_s']:>8.2f} " + " ".join(cells) + mem)


def main(
    model: str = typer.Option("tiny", help="'tiny', hub id, folder or .safetensors"),
    sizes: str = typer.Option("64,128,256", help="comma-separated long sides"),
    frames: str = typer.Option("8,32", help="comma-separated N"),
    lora_steps: int = typer.Option(80),
    frames_per_batch: int = typer.Option(8),
    device: Optional[str] = typer.Option(None),
    dtype: Optional[str] = typer.Option(None),
    flow_hw: int = typer.Option(64, help="latent size of the flow benchmark"),
    json_out: Optional[str] = typer.Option(None, "--json", help="also write the figures as JSON"),
) -> None:
    from .pipeline import DreamMover

    dm = DreamMover.from_pretrained(model, device=device, dtype=dtype)
    print(f"model {dm.components.identity} on {dm.device} ({torch.get_num_threads()} threads)")
    rows = bench_pipeline(dm, [int(s) for s in sizes.split(",")], [int(n) for n in frames.split(",")],
                          lora_steps, frames_per_batch)
    print_table(rows)
    flow = bench_flow(flow_hw, device=str(dm.device))
    print(f"estimate_flow on {flow['features']} features: matmul {flow['matmul_s']:.3f} s, per-pixel loop "
          f"{flow['per_pixel_loop_s']:.2f} s, speedup x{flow['speedup']:.0f} ({flow['differing_pixels']} of "
          f"{flow['pixels']} pixels differ: float near-ties)")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(dict(pipeline=rows, flow=flow), fh, indent=2, default=lambda o: np.asarray(o).tolist())


if __name__ == "__main__":
    typer.run(main)
