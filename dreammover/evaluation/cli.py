"""`dreammover bench`: registered on the main CLI through the `dreammover.cli` entry point (heavy imports lazily)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the `dreammover` app."""

    @app.command("bench")
    def bench(
        pairs_dir: Path = typer.Argument(..., help="folder of pair folders, each with 0.* and 1.*"),
        output: Path = typer.Option(..., "-o", "--output", help="report folder (report.md, metrics, plots, clips)"),
        methods: Optional[str] = typer.Option(
            None, "--methods", help="comma list of dreammover,crossfade,classic "
                                    "(default: all; none when --clips-dir is given)"),
        ablations: Optional[str] = typer.Option(
            None, "--ablations", help="comma list of opencv_flow,direct_fusion,no_ref_attention,no_lora, or 'all'"),
        clips_dir: Optional[Path] = typer.Option(
            None, "--clips-dir", help="score existing clips DIR/<pair>/*.mp4 against PAIRS_DIR/<pair>/0.*,1.*"),
        model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                                  help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
        size: int = typer.Option(512, "--size", min=64, help="long side in pixels"),
        frames: int = typer.Option(32, "--frames", min=1, help="in-between frames N (clips have N+2)"),
        lora_steps: int = typer.Option(80, "--lora-steps", min=0),
        fps: float = typer.Option(10.0, "--fps", min=0.1),
        seed: int = typer.Option(0, "--seed"),
        config_file: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML of InterpolationConfig fields"),
        flow: str = typer.Option("dis", "--flow", help="OpenCV flow for WE and the classic baseline: dis|farneback"),
        we_scale: float = typer.Option(100.0, "--we-scale", help="WE/WE_mid = MSE on [0,1] pixels x this"),
        lpips_weights: Optional[str] = typer.Option(None, "--lpips-weights",
                                                    help="AlexNet/VGG16 checkpoint for LPIPS ('random': plumbing)"),
        lpips_lin: Optional[str] = typer.Option(None, "--lpips-lin",
                                                help="LPIPS linear-layer weights (lpips' alex.pth)"),
        lpips_arch: str = typer.Option("alex", "--lpips-arch", help="alex | vgg"),
        fid_weights: Optional[str] = typer.Option(None, "--fid-weights",
                                                  help="Inception-v3 checkpoint for FID ('random': plumbing)"),
        hf_pairs: int = typer.Option(1, "--hf-pairs", min=0, help="pairs to trace the Fig. 5c curve on"),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Benchmark DreamMover, its Table-3 ablations and weight-free baselines; write report.md with plots."""
        from ..cli import fail
        from ..config_io import load_config_file
        from .report import write_report
        from .runner import BenchSettings, run_bench

        chosen = _split(methods) if methods is not None else (() if clips_dir else ("dreammover", "crossfade",
                                                                                    "classic"))
        abl = _split(ablations)
        if abl == ("all",):
            from .baselines import ABLATIONS

            abl = tuple(ABLATIONS)
        if not chosen and not abl and clips_dir is None:
            fail("nothing to run: give --methods, --ablations or --clips-dir")
        try:
            config = load_config_file(config_file, num_frames=frames, size=size, lora_steps=lora_steps, seed=seed)
        except (ValueError, OSError) as err:
            fail(f"bad configuration: {err}")
        settings = BenchSettings(
            pairs_dir=pairs_dir, out_dir=output, methods=chosen, ablations=abl, clips_dir=clips_dir, model=model,
            device=device, dtype=dtype, config=config, fps=fps, we_scale=we_scale, flow_method=flow,
            lpips_weights=lpips_weights, lpips_lin=lpips_lin, lpips_arch=lpips_arch, fid_weights=fid_weights,
            hf_pairs=hf_pairs)
        output.mkdir(parents=True, exist_ok=True)
        log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
        try:
            result = run_bench(settings, log=log)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        md = write_report(result, settings)
        for metric, why in result.skipped.items():
            typer.echo(f"skipped {metric}: {why}", err=True)
        typer.echo(f"wrote {md} ({len(result.rows)} clips scored, {len(result.problems)} problems)")
