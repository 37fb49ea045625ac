"""`dreammover discover SOURCE -o manifest.json`: the clip-worthy pairs of a photo archive, as a manifest for run-archive."""
from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Optional

import typer


def _load_config(path: Optional[Path], **flags):
    """DiscoverConfig from a JSON/YAML file plus the flags given; a bad value is one error line (exit 2)."""
    from pydantic import ValidationError

    from dreammover.cli import fail

    from .config import DiscoverConfig

    values = {}
    if path is not None:
        if not path.is_file():
            fail(f"--config {path}: file not found")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except ValueError as err:
            fail(f"--config {path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({err})")
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return DiscoverConfig(**values)
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"bad discover setting {'.'.join(map(str, first['loc']))}: {first['msg']}")


def _check_output(uri: str, suffixes: tuple[str, ...], what: str) -> None:
    """A local output must be writable with the right suffix (s3:// outputs are checked by their write)."""
    from dreammover.cli import fail
    from dreammover.preflight import PreflightError, check_output_path

    if PurePosixPath(uri).suffix.lower() not in suffixes:
        fail(f"{what} {uri}: use a {' or '.join(suffixes)} file name")
    if not uri.startswith("s3://"):
        try:
            check_output_path(uri, suffixes)
        except PreflightError as err:
            fail(str(err))


def _check_source(source: str) -> None:
    """A missing local folder or an unreachable bucket is one line and exit 2, before any photo is read."""
    from dreammover.cli import fail
    from dreammover_tasks.storage import StorageError, open_storage

    if not source.startswith("s3://"):
        path = Path(source.removeprefix("file://"))
        if not path.is_dir():
            fail(f"{source}: {'not a folder' if path.exists() else 'folder not found'} (give the archive's folder "
                 "or an s3:// prefix)")
        return
    try:
        open_storage(source).list_info("__dreammover_probe__")
    except StorageError as err:
        fail(str(err))


def discover_command(
    source: str = typer.Argument(..., help="Archive: a local folder or an s3:// prefix (searched recursively)."),
    output: str = typer.Option(..., "-o", "--output", help="Manifest to write (.json); the report goes beside it."),
    contact_sheet: Optional[str] = typer.Option(None, "--contact-sheet", help="Also write a JPEG of the pairs found."),
    gap: Optional[float] = typer.Option(None, "--gap", help="Most seconds between photos of a burst  [default: 3.0]"),
    chain: bool = typer.Option(False, "--chain", help="A burst of K>2 photos becomes one clip through all of them."),
    state: Optional[str] = typer.Option(None, "--state", help="State file (JSON, local or s3://): only photos new "
                                        "since the run that wrote it are read; written back afterwards."),
    config: Optional[Path] = typer.Option(None, "--config", help="JSON/YAML file of discovery thresholds."),
) -> None:
    """Find the clip-worthy pairs in a folder of photos: bursts by EXIF time and camera, checked on thumbnails."""
    from dreammover.cli import fail

    from .manifest import contact_sheet as write_sheet
    from .manifest import report_uri, write_manifest
    from .run import discover
    from .state import load_state, save_state

    cfg = _load_config(config, burst_gap_s=gap, chain=chain or None)
    _check_source(source)
    _check_output(output, (".json",), "-o")
    if contact_sheet:
        _check_output(contact_sheet, (".jpg", ".jpeg"), "--contact-sheet")
    try:
        known = load_state(state) if state else None
    except Exception as err:  # unreadable or not a state: say so, never start over silently
        fail(f"--state {state}: cannot be read as a discovery state ({str(err).splitlines()[0]})")
    if known is not None and known.source and known.source != open_storage_uri(source):
        fail(f"--state {state} was written for {known.source}, not {open_storage_uri(source)}: use a state per archive")
    from tqdm import tqdm

    with tqdm(desc="reading photos", unit="photo", disable=None) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = discover(source, cfg, known, progress)
    write_manifest(result, output)
    skipped = sum(1 for n in result.photos_report if n["note"].startswith("skipped"))
    typer.echo(f"{result.photos} photo(s) read, {len(result.bursts)} burst(s), {len(result.pairs)} "
               f"manifest entr{'y' if len(result.pairs) == 1 else 'ies'}, {len(result.rejected)} candidate(s) rejected, "
               f"{skipped} file(s) skipped")
    typer.echo(f"manifest: {output}\nreport: {report_uri(output)}")
    if contact_sheet:
        write_sheet(result, contact_sheet, cfg)
        typer.echo(f"contact sheet: {contact_sheet}")
    if state:
        save_state(result.state, state)
        typer.echo(f"state: {state}")


def open_storage_uri(source: str) -> str:
    """The source as discovery names it (the storage's URI), to compare with a state's."""
    from dreammover_tasks.storage import open_storage

    return open_storage(source).uri()


def register(app: typer.Typer) -> None:
    """Add `discover` to the dreammover CLI."""
    app.command("discover")(discover_command)
