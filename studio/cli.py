"""`dreammover studio`: serve the studio, and manage who may use it (add-user, list-users, revoke-user).

Registered on the core CLI through the `dreammover.cli` entry point.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer


def build(dm_or_backend, home: Path, config=None, limits=None, svd_model: str | None = None, auth=None,
          allowed_hosts: list[str] | None = None, restyle_model: str | None = None):
    """(app, runner) over a DreamMover (in-process jobs) or a ready backend (e.g. PrefectBackend).

    `svd_model` (in-process only) enables backend=svd jobs; it is loaded on the first one, on the DreamMover's
    device. `restyle_model` (in-process only) enables the Restyle action on finished jobs, loaded on the first
    restyle job. `auth` (studio.auth.Auth) None: the users of `home`; `allowed_hosts` None: loopback names.
    """
    from .app import create_app
    from .limits import StudioLimits
    from .local_backend import LocalBackend
    from .restyle_jobs import RestyleJobs
    from .runner import Runner
    from .store import JobStore
    from .svd_jobs import SVDJobs

    if hasattr(dm_or_backend, "run"):
        backend = dm_or_backend
    else:
        dm = dm_or_backend
        backend = LocalBackend(dm, svd=SVDJobs(svd_model, dm.device, dm.dtype) if svd_model else None,
                               restyle=RestyleJobs(restyle_model, dm.device, dm.dtype) if restyle_model else None)
    store = JobStore(home)
    limits = limits or StudioLimits()
    runner = Runner(store, backend, limits=limits).start()
    return create_app(store, runner, config, limits, auth, allowed_hosts), runner


def restyle_model_for(given: str | None, model: str, deployment: str | None) -> str | None:
    """The Restyle action's model: as --model is chosen (tiny -> tiny-t2v, else Zeroscope); None = off ('none',
    or a studio on a Prefect deployment, which runs no model in-process)."""
    if deployment or (given or "").lower() == "none":
        return None
    if given:
        return given
    from dreammover.restyle import DEFAULT_T2V

    return "tiny-t2v" if model == "tiny" else DEFAULT_T2V


def _home(home: Optional[Path]) -> Path:
    from dreammover.models import default_cache_dir

    return home or default_cache_dir() / "studio"


HOME = typer.Option(None, "--home", help="jobs database, users and files [default: $DREAMMOVER_HOME/studio]")
studio_app = typer.Typer(add_completion=False, no_args_is_help=False,
                         help="The content team's studio: a page and a job API; and who may use it.")


@studio_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    model: str = typer.Option("stable-diffusion-v1-5/stable-diffusion-v1-5", "--model",
                              help="'tiny', a hub id, a diffusers folder or a .safetensors file"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    home: Optional[Path] = HOME,
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML of default settings"),
    device: Optional[str] = typer.Option(None, "--device"),
    dtype: Optional[str] = typer.Option(None, "--dtype"),
    deployment: Optional[str] = typer.Option(None, "--deployment", help="run jobs on this Prefect deployment "
                                             "(e.g. interpolate-pair/gpu) instead of in-process"),
    max_frames: int = typer.Option(64, "--max-frames"),
    max_size: int = typer.Option(1024, "--max-size"),
    max_upload_mb: float = typer.Option(20, "--max-upload-mb", help="per photo, in MiB"),
    svd_model: Optional[str] = typer.Option(None, "--svd-model", help="enable backend=svd jobs with this SVD "
                                            "model ('tiny-svd', an id or a folder), loaded on the first one"),
    allowed_host: Optional[List[str]] = typer.Option(None, "--allowed-host", help="a Host name the studio "
                                                     "answers to (repeatable) [default: the --host address]"),
    no_auth: bool = typer.Option(False, "--no-auth", help="no sign-in (only with a loopback --host)"),
    deadline_hours: float = typer.Option(6.0, "--deadline-hours", help="with --deployment: a flow run still "
                                         "unfinished after this long fails the job"),
    restyle_model: Optional[str] = typer.Option(None, "--restyle-model", help="text-to-video model of the Restyle "
                                                "action ('tiny-t2v', 't2v-random', an id or a folder; 'none': "
                                                "off), loaded on the first restyle job (default: tiny-t2v with "
                                                "--model tiny, else cerspense/zeroscope_v2_576w)"),
    restyle_steps: int = typer.Option(200, "--restyle-steps", min=1, help="most iterations a restyle job may "
                                      "ask for (the page's default)"),
) -> None:
    """Serve the studio (sign-in required: see add-user, or set DREAMMOVER_STUDIO_TOKEN)."""
    ctx.obj = {"home": home}
    if ctx.invoked_subcommand is not None:
        return
    from dreammover.cli import fail, require_extra

    require_extra("studio", "fastapi", "uvicorn", "multipart")
    import uvicorn

    from dreammover.config_io import load_config_file
    from dreammover.models import ModelLoadError

    from .auth import ENV_TOKEN, Auth, UserStore
    from .guard import LOOPBACK, default_hosts
    from .limits import StudioLimits

    loopback = host in LOOPBACK or host.startswith("127.")
    if no_auth and not loopback:
        fail(f"--no-auth is only allowed on a loopback address (--host 127.0.0.1), not {host}: anyone who can "
             "reach the port could use the studio; add users instead (dreammover studio add-user NAME)")
    try:
        config = load_config_file(config_file)
    except (ValueError, OSError) as err:
        fail(f"bad configuration: {err}")
    if deployment and svd_model:
        fail("--svd-model runs jobs in-process: it cannot be combined with --deployment")
    home = _home(home)
    users = UserStore(home)
    auth = Auth.off() if no_auth else Auth(users, os.environ.get(ENV_TOKEN))
    if deployment:
        from .prefect_backend import PrefectBackend

        engine = PrefectBackend(deployment, deadline_seconds=deadline_hours * 3600)
    else:
        from dreammover.pipeline import DreamMover

        typer.echo(f"loading model {model!r} ...", err=True)
        try:
            engine = DreamMover.from_pretrained(model, device=device, dtype=dtype)
        except ModelLoadError as err:
            fail(str(err))
    limits = StudioLimits(upload_bytes=int(max_upload_mb * 1024 * 1024), frames=max_frames, size=max_size,
                          restyle_steps=restyle_steps)
    hosts = list(allowed_host or default_hosts(host))
    web, runner = build(engine, home, config, limits, svd_model, auth, hosts,
                        restyle_model_for(restyle_model, model, deployment))
    if no_auth:
        typer.secho("authentication is OFF (--no-auth): anyone on this machine can use the studio", err=True,
                    fg=typer.colors.YELLOW)
    elif not users.list() and not auth.env_token:
        typer.secho(f"no users yet: nobody can sign in. Add one: dreammover studio --home {home} add-user NAME "
                    f"(or set {ENV_TOKEN})", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"studio on http://{host}:{port}/ (jobs in {home}; answers to {', '.join(hosts)})", err=True)
    try:
        uvicorn.run(web, host=host, port=port, log_level="warning")
    finally:
        runner.stop()


def _users(ctx: typer.Context, home: Optional[Path]):
    from .auth import UserStore

    return UserStore(_home(home or (ctx.obj or {}).get("home")))


@studio_app.command("add-user")
def add_user(ctx: typer.Context, name: str = typer.Argument(..., help="lower-case letters, digits, . _ -"),
             admin: bool = typer.Option(False, "--admin", help="sees and acts on every user's jobs"),
             home: Optional[Path] = HOME) -> None:
    """Add a user and print their token, once (only its hash is stored)."""
    from dreammover.cli import fail

    from .auth import UserError

    try:
        token = _users(ctx, home).add(name, admin)
    except UserError as err:
        fail(str(err))
    typer.echo(token)
    typer.echo(f"user {name!r}{' (admin)' if admin else ''} added. Give them the token above: it is shown only "
               "this once. They sign in on the page, or send 'Authorization: Bearer <token>'.", err=True)


@studio_app.command("list-users")
def list_users(ctx: typer.Context, home: Optional[Path] = HOME) -> None:
    """The users who may sign in (names only; tokens are not stored)."""
    import time

    for u in _users(ctx, home).list():
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(u["created"])) if u["created"] else "?"
        typer.echo(f"{u['name']}\t{'admin' if u['admin'] else 'user'}\tadded {when}")


@studio_app.command("revoke-user")
def revoke_user(ctx: typer.Context, name: str = typer.Argument(...), home: Optional[Path] = HOME) -> None:
    """Remove a user: their token (and any page signed in with it) stops working at once."""
    from dreammover.cli import fail

    from .auth import UserError

    try:
        _users(ctx, home).revoke(name)
    except UserError as err:
        fail(str(err))
    typer.echo(f"user {name!r} revoked", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(studio_app, name="studio")


def main() -> None:
    """`python -m dreammover_studio ...` without the installed entry point (tests, a source checkout)."""
    app = typer.Typer(add_completion=False)
    register(app)

    @app.callback()
    def _root() -> None:
        """dreammover studio"""

    app()
