"""`dreammover bench`: registered on the main CLI through the `dreammover.cli` entry point (heavy imports lazily)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


# `dreammover bench --model tiny` with the paper's 512 px / 32 frames / 80 LoRA steps ran for hours on a
# laptop CPU, for a plumbing model whose frames mean nothing: its defaults are the smallest faithful run.
TINY_QUICK = {"size": 64, "num_frames": 4, "lora_steps": 20}


def quick_defaults(model: str, given: set[str]) -> dict:
    """Starting values for fields nobody set (file, env, options), per model: only 'tiny' has any."""
    return {k: v for k, v in TINY_QUICK.items() if k not in given} if model == "tiny" else {}


def register(app: typer.Typer) -> None:
    """Add the `bench` command to the `dreammover` app."""

    @app.command("bench")
    def bench(
        ctx: typer.Context,
        pairs_dir: Optional[Path] = typer.Argument(None, help="folder of pair folders, each with 0.* and 1.* "
                                                   "(not with --restyle)"),
        output: Optional[Path] = typer.Option(None, "-o", "--output",
                                              help="report folder (report.md, metrics, plots, clips)"),
        methods: Optional[str] = typer.Option(
            None, "--methods", help="comma list of dreammover,crossfade,classic "
                                    "(default: all; none when --clips-dir is given)"),
        ablations: Optional[str] = typer.Option(
            None, "--ablations", help="comma list of opencv_flow,direct_fusion,no_ref_attention,no_lora (Table 3; "
                                      "'all' = these four) and farneback_flow"),
        clips_dir: Optional[Path] = typer.Option(
            None, "--clips-dir", help="score existing clips DIR/<pair>/*.mp4 against PAIRS_DIR/<pair>/0.*,1.*"),
        model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                                  help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
        size: Optional[int] = typer.Option(None, "--size", min=64, show_default=False,
                                           help="long side in pixels  [default: 512; 64 for --model tiny]"),
        frames: Optional[int] = typer.Option(None, "--frames", min=1, show_default=False,
                                             help="in-between frames N (clips have N+2)  [default: 32; 4 for tiny]"),
        lora_steps: Optional[int] = typer.Option(None, "--lora-steps", min=0, show_default=False,
                                                 help="LoRA fit steps per pair  [default: 80; 20 for tiny]"),
        fps: float = typer.Option(10.0, "--fps", min=0.1, help="frames per second of the written clips"),
        seed: Optional[int] = typer.Option(None, "--seed", show_default=False,
                                           help="seed of the LoRA fit  [default: 0]"),
        config_file: Optional[Path] = typer.Option(
            None, "--config", help="JSON/YAML of InterpolationConfig fields; DREAMMOVER_CFG_<FIELD> env vars "
                                   "override it, options given here override both"),
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
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps (default: best available)"),
        dtype: Optional[str] = typer.Option(None, "--dtype", help="fp16 | bf16 | fp32 (default fp16 on CUDA)"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no plan, progress or ETA lines"),
        restyle: bool = typer.Option(False, "--restyle", help="bench DreamMotion restyling and its ablations instead "
                                     "(docs/restyle.md); --model is then a text-to-video model (tiny-t2v, t2v-random, "
                                     "an id or a folder), --frames/--size the generated clip's frames and width"),
        steps: Optional[int] = typer.Option(None, "--steps", min=1, show_default=False,
                                            help="--restyle: iterations  [default: 200; 20 for tiny-t2v]"),
        clip: Optional[Path] = typer.Option(None, "--clip", help="--restyle: edit this clip (default: a generated "
                                            "one with its own prompts and box)"),
        source_prompt: Optional[str] = typer.Option(None, "--source-prompt", help="--restyle: what the clip shows"),
        target_prompt: Optional[str] = typer.Option(None, "--target-prompt", help="--restyle: what it should show"),
        box: Optional[str] = typer.Option(None, "--box", help="--restyle: x,y,w,h region to restyle"),
        clip_model: Optional[Path] = typer.Option(None, "--clip-model", help="--restyle: local CLIP folder for text "
                                                  "alignment and frame consistency (else n/a)"),
        cotracker_weights: Optional[Path] = typer.Option(
            None, "--cotracker-weights", help="--restyle: CoTracker checkpoint for the paper's motion fidelity "
                                              "(else OpenCV only)"),
    ) -> None:
        """Benchmark DreamMover, its Table-3 ablations and weight-free baselines; write report.md with plots."""
        if restyle:  # DreamMotion's bench (dreammover/restyle_bench.py); --model's default is then Zeroscope's
            from click.core import ParameterSource

            from ..restyle_bench import bench_command, settings_from_options

            given = None if ctx.get_parameter_source("model") == ParameterSource.DEFAULT else model
            return bench_command(settings_from_options(
                pairs_dir, given, steps, clip, source_prompt, target_prompt, box, frames, size, seed, device, dtype,
                clip_model, lpips_weights, lpips_lin, lpips_arch, cotracker_weights), output, quiet)
        if pairs_dir is None or output is None:
            from ..cli import fail

            fail("give PAIRS_DIR and -o OUTPUT (or --restyle)")
        from ..cli import fail, load_config, say_warnings
        from ..config_io import given_fields
        from ..preflight import PreflightError, check_output_path
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
        given = dict(num_frames=frames, size=size, lora_steps=lora_steps, seed=seed)
        try:
            quick = quick_defaults(model, given_fields(config_file, **given))
        except (ValueError, OSError) as err:
            fail(f"bad configuration: {' '.join(str(err).split())}")
        config = load_config(config_file, defaults=quick, **given)
        if quick and not quiet:
            typer.echo("model 'tiny' is for plumbing, not quality: quick defaults "
                       + ", ".join(f"{k}={v}" for k, v in quick.items())
                       + " (set them with --config, DREAMMOVER_CFG_* or options)", err=True)
        settings = BenchSettings(
            pairs_dir=pairs_dir, out_dir=output, methods=chosen, ablations=abl, clips_dir=clips_dir, model=model,
            device=device, dtype=dtype, config=config, fps=fps, we_scale=we_scale, flow_method=flow,
            lpips_weights=lpips_weights, lpips_lin=lpips_lin, lpips_arch=lpips_arch, fid_weights=fid_weights,
            hf_pairs=hf_pairs)
        try:  # the report folder must be writable before hours of runs, not after
            check_output_path(output, formats=())
            output.mkdir(parents=True, exist_ok=True)
        except (PreflightError, OSError) as err:
            fail(str(err) if isinstance(err, PreflightError) else f"{output}: cannot create the report folder ({err})")
        log = (lambda msg: None) if quiet else (lambda msg: typer.echo(msg, err=True))
        try:
            with say_warnings():
                result = run_bench(settings, log=log)
        except (FileNotFoundError, ValueError) as err:
            fail(str(err))
        md = write_report(result, settings)
        for metric, why in result.skipped.items():
            typer.echo(f"skipped {metric}: {why}", err=True)
        typer.echo(f"wrote {md} ({len(result.rows)} clips scored, {len(result.problems)} problems)")
