"""Speed benchmark: per-stage seconds and UNet image-evaluations, and Eq. 5 flow vs a per-pixel loop.

    python -m dreammover.bench                      # tiny model, 64/128/256 px, N = 8/32
    python -m dreammover.bench --device cuda --model sd15-random --sizes 512 --frames 32
"""
from __future__ import annotations

import json
import time
from typing import Optional

import numpy as np
import torch
import typer

STAGES = ("prepare", "encode", "lora", "inversion", "features", "flow", "denoise", "decode")


def bench_pipeline(dm, sizes, frames, lora_steps: int = 80, frames_per_batch: int | str = "auto",
                   repeats: int = 2, lora: bool = True) -> list[dict]:
    """Run the whole method `repeats` times per (size, N) on the procedural sample pair; one row per run.

    The first run of a shape is "cold" (first kernels, allocator growth, autotuning), the later ones "warm".
    """
    from .config import InterpolationConfig
    from .profiling import peak_memory_gb, reset_peak_memory, synchronize
    from .sample import sample_pair

    im0, im1 = sample_pair(512)
    rows = []
    for size in sizes:
        for n in frames:
            cfg = InterpolationConfig(size=size, num_frames=n, lora=lora, lora_steps=lora_steps,
                                      frames_per_batch=frames_per_batch)
            for run in range(repeats):
                reset_peak_memory(dm.device)
                synchronize(dm.device)
                start = time.perf_counter()
                r = dm.interpolate(im0, im1, cfg)
                synchronize(dm.device)
                rows.append(dict(size=size, frames=n, run="cold" if run == 0 else "warm",
                                 total_s=time.perf_counter() - start, seconds=dict(r.seconds),
                                 unet_evals=dict(r.unet_evals), total_unet_evals=sum(r.unet_evals.values()),
                                 peak_mem_gb=peak_memory_gb(dm.device)))
    return rows


def bench_flow(hw: int = 64, channels: int = 1280, device: str = "cpu", seed: int = 0) -> dict:
    """Time estimate_flow (one chunked matmul + argmax) against a straightforward per-pixel loop."""
    from .correspondence import estimate_flow, estimate_flow_per_pixel

    g = torch.Generator().manual_seed(seed)
    f0, f1 = (torch.randn(channels, hw, hw, generator=g).to(device) for _ in range(2))
    from .profiling import synchronize

    dev = torch.device(device)
    estimate_flow(f0, f1)  # warm-up
    synchronize(dev)
    t = time.perf_counter()
    fast01, _ = estimate_flow(f0, f1)
    synchronize(dev)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    slow01 = estimate_flow_per_pixel(f0.cpu(), f1.cpu())
    slow = time.perf_counter() - t
    # Random features have near-ties (gaps ~1e-8) where summation order flips the argmax: count them.
    differ = int((fast01.cpu() != slow01).any(dim=0).sum())
    return dict(features=f"{channels}x{hw}x{hw}", matmul_s=fast, per_pixel_loop_s=slow, speedup=slow / fast,
                differing_pixels=differ, pixels=hw * hw)


def print_table(rows: list[dict]) -> None:
    print("per-stage seconds (UNet image-evaluations in brackets)")
    print(f"{'size':>5} {'N':>3} {'run':>4} {'total s':>8} " + " ".join(f"{s:>9}" for s in STAGES)
          + f" {'evals':>6} {'peak GiB':>8}")
    for r in rows:
        cells = []
        for s in STAGES:
            sec, ev = r["seconds"].get(s), r["unet_evals"].get(s)
            cells.append(f"{'-' if sec is None else f'{sec:.2f}':>9}" + (f"[{ev}]" if ev else ""))
        mem = "-" if r.get("peak_mem_gb") is None else f"{r['peak_mem_gb']:.2f}"
        print(f"{r['size']:>5} {r['frames']:>3} {r['run']:>4} {r['total_s']:>8.2f} " + " ".join(cells)
              + f" {r['total_unet_evals']:>6} {mem:>8}")


def main(
    model: str = typer.Option("tiny", help="'tiny', 'sd15-random' (SD1.5 architecture, random weights), hub id, "
                                           "folder or .safetensors"),
    sizes: str = typer.Option("64,128,256", help="comma-separated long sides"),
    frames: str = typer.Option("8,32", help="comma-separated N"),
    lora_steps: int = typer.Option(80),
    no_lora: bool = typer.Option(False, "--no-lora", help="skip the LoRA fit"),
    frames_per_batch: str = typer.Option("auto", help="in-between frames per batch, or 'auto'"),
    repeats: int = typer.Option(2, min=1, help="runs per shape: the first is cold, the rest warm"),
    device: Optional[str] = typer.Option(None),
    dtype: Optional[str] = typer.Option(None),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the UNet (pays only for long batch jobs)"),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="replay fixed-shape UNet calls as CUDA graphs"),
    flow_hw: int = typer.Option(64, help="latent size of the flow benchmark"),
    json_out: Optional[str] = typer.Option(None, "--json", help="also write the figures as JSON"),
) -> None:
    from .pipeline import DreamMover
    from .profiling import synchronize

    fpb = frames_per_batch if frames_per_batch == "auto" else int(frames_per_batch)
    start = time.perf_counter()
    dm = DreamMover.from_pretrained(model, device=device, dtype=dtype, compile=compile, cuda_graphs=cuda_graphs)
    synchronize(dm.device)
    load_s = time.perf_counter() - start
    print(f"model {dm.components.identity} on {dm.device} ({torch.get_num_threads()} threads); "
          f"loaded in {load_s:.2f} s")
    rows = bench_pipeline(dm, [int(s) for s in sizes.split(",")], [int(n) for n in frames.split(",")],
                          lora_steps, fpb, repeats, lora=not no_lora)
    print_table(rows)
    print(f"cold (fresh process, model load + first run): {load_s + rows[0]['total_s']:.2f} s")
    flow = bench_flow(flow_hw, device=str(dm.device))
    print(f"estimate_flow on {flow['features']} features: matmul {flow['matmul_s']:.3f} s, per-pixel loop "
          f"{flow['per_pixel_loop_s']:.2f} s, speedup x{flow['speedup']:.0f} ({flow['differing_pixels']} of "
          f"{flow['pixels']} pixels differ: float near-ties)")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(dict(model_load_s=load_s, pipeline=rows, flow=flow), fh, indent=2,
                      default=lambda o: np.asarray(o).tolist())


if __name__ == "__main__":
    typer.run(main)
