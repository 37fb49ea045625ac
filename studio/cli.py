"""`dreammover studio`: registered on the core CLI through the `dreammover.cli` entry point."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def build(dm_or_backend, home: Path, config=None, limits=None, svd_model: str | None = None):
    """(app, runner) over a DreamMover (in-process jobs) or a ready backend (e.g. PrefectBackend).

    `svd_model` (in-process only) enables backend=svd jobs; it is loaded on the first one, on the DreamMover's device.
    """
    from .app import Limits, create_app
    from .runner import LocalBackend, Runner
    from .store import JobStore
    from .svd_jobs import SVDJobs

    if hasattr(dm_or_backend, "run"):
        backend = dm_or_backend
    else:
        dm = dm_or_backend
        backend = LocalBackend(dm, svd=SVDJobs(svd_model, dm.device, dm.dtype) if svd_model else None)
    store = JobStore(home)
    runner = Runner(store, backend).start()
    return create_app(store, runner, config, limits or Limits()), runner


def register(app: typer.Typer) -> None:
    @app.command()
    def studio(
        model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                                  help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port"),
        home: Optional[Path] = typer.Option(None, "--home", help="jobs database and files "
                                            "[default: $DREAMMOVER_HOME/studio]"),
        config_file: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML of default settings"),
        device: Optional[str] = typer.Option(None, "--device"),
        dtype: Optional[str] = typer.Option(None, "--dtype"),
        deployment: Optional[str] = typer.Option(None, "--deployment", help="run jobs on this Prefect "
                                                 "deployment (e.g. interpolate-pair/gpu) instead of in-process"),
        max_frames: int = typer.Option(64, "--max-frames"),
        max_size: int = typer.Option(1024, "--max-size"),
        max_upload_mb: float = typer.Option(20, "--max-upload-mb"),
        svd_model: Optional[str] = typer.Option(None, "--svd-model", help="enable backend=svd jobs with this SVD "
                                                "model ('tiny-svd', an id or a folder), loaded on the first one"),
    ) -> None:
        """The content team's studio: a page and a job API (queue, progress, previews, presets, history)."""
        import uvicorn

        from dreammover.cli import fail
        from dreammover.config_io import load_config_file
        from dreammover.models import ModelLoadError, default_cache_dir

        from .app import Limits

        try:
            config = load_config_file(config_file)
        except (ValueError, OSError) as err:
            fail(f"bad configuration: {err}")
        if deployment and svd_model:
            fail("--svd-model runs jobs in-process: it cannot be combined with --deployment")
        if deployment:
            from .prefect_backend import PrefectBackend

            engine = PrefectBackend(deployment)
        else:
            from dreammover.pipeline import DreamMover

            typer.echo(f"loading model {model!r} ...", err=True)
            try:
                engine = DreamMover.from_pretrained(model, device=device, dtype=dtype)
            except ModelLoadError as err:
                fail(str(err))
        home = home or default_cache_dir() / "studio"
        limits = Limits(upload_bytes=int(max_upload_mb * 1024 * 1024), frames=max_frames, size=max_size)
        web, runner = build(engine, home, config, limits, svd_model)
        typer.echo(f"studio on http://{host}:{port}/ (jobs in {home})", err=True)
        try:
            uvicorn.run(web, host=host, port=port, log_level="warning")
        finally:
            runner.stop()


def main() -> None:
    """`python -m studio ...` without the installed entry point (tests, a source checkout)."""
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def _root() -> None:
        """dreammover studio"""

    app()
