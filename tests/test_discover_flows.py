"""`dreammover discover` from the command line: an s3:// archive through a real S3 API (moto_server), bad input
exits 2, and the manifest it writes renders through `run-archive --manifest` with the tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from discover_archive import make_archive
from fault_harness import moto_server


def _discover_cli(args):
    import typer

    from dreammover.discover.cli import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root():  # a group, so the command is invoked by its name as in `dreammover discover`
        pass

    return CliRunner().invoke(app, ["discover", *args])


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 API on 127.0.0.1 with buckets inputs/outputs; boto3 reaches it through AWS_ENDPOINT_URL."""
    with moto_server() as url, pytest.MonkeyPatch.context() as mp:
        nowhere = tmp_path_factory.mktemp("aws") / "none"
        for k, v in dict(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                         AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(nowhere),
                         AWS_SHARED_CREDENTIALS_FILE=str(nowhere)).items():
            mp.setenv(k, v)
        from dreammover_tasks.storage import s3_client

        client = s3_client()
        for bucket in ("inputs", "outputs"):
            client.create_bucket(Bucket=bucket)
        yield client


def test_missing_source_and_bad_outputs_exit_2(tmp_path):
    result = _discover_cli([str(tmp_path / "nowhere"), "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 2 and "folder not found" in result.output
    (tmp_path / "in").mkdir()
    result = _discover_cli([str(tmp_path / "in"), "-o", str(tmp_path / "m.csv")])
    assert result.exit_code == 2 and "use a .json file name" in result.output
    result = _discover_cli([str(tmp_path / "in"), "-o", str(tmp_path / "m.json"), "--gap", "-1"])
    assert result.exit_code == 2 and "burst_gap_s" in result.output
    assert not (tmp_path / "m.json").exists()


def test_s3_archive_with_state_and_contact_sheet(s3, tmp_path):
    arc = make_archive(tmp_path / "arc", bad_inputs=True)
    for path in sorted(arc.root.rglob("*")):
        key = path.relative_to(arc.root).as_posix()
        if path.is_file() and not key.startswith("scans/"):  # S3 LastModified is upload time: no capture order
            s3.put_object(Bucket="inputs", Key=f"photos/{key}", Body=path.read_bytes())
    args = ["s3://inputs/photos", "-o", "s3://outputs/d/manifest.json", "--contact-sheet", "s3://outputs/d/sheet.jpg",
            "--state", "s3://outputs/d/state.json"]
    gets = []  # (key, ranged?) of every GetObject the discovery makes

    def record(params, **_):
        if params.get("Bucket") == "inputs":
            gets.append((params["Key"].removeprefix("photos/"), "Range" in params))

    s3.meta.events.register("provide-client-params.s3.GetObject", record)
    try:
        result = _discover_cli(args)
    finally:
        s3.meta.events.unregister("provide-client-params.s3.GetObject", record)
    assert result.exit_code == 0, result.output
    # Singles: one ranged GET (their header) and nothing more; burst photos are read whole for thumbnails.
    assert [g for g in gets if g[0] == "DCIM/IMG_0400.JPG"] == [("DCIM/IMG_0400.JPG", True)]
    assert ("nikon/DSC_0001.jpg", False) in gets
    manifest = json.loads(s3.get_object(Bucket="outputs", Key="d/manifest.json")["Body"].read())
    assert manifest["source"] == "s3://inputs/photos"
    assert {(p["image0"], p["image1"]) for p in manifest["pairs"]} == {p for p in arc.pairs if "scans/" not in p[0]}
    report = json.loads(s3.get_object(Bucket="outputs", Key="d/manifest.report.json")["Body"].read())
    notes = {n["key"]: n["note"] for n in report["photos"]}
    assert all(why in notes[key] for key, why in arc.bad.items())
    sheet = s3.get_object(Bucket="outputs", Key="d/sheet.jpg")["Body"].read()
    assert sheet[:2] == b"\xff\xd8" and len(sheet) > 1000
    again = _discover_cli(args)  # nothing new since the state was written
    assert again.exit_code == 0 and again.output.startswith("0 photo(s) read")
    assert json.loads(s3.get_object(Bucket="outputs", Key="d/manifest.json")["Body"].read())["pairs"] == []
    other = _discover_cli(["s3://inputs/elsewhere", "-o", str(tmp_path / "m.json"), "--state", "s3://outputs/d/state.json"])
    assert other.exit_code == 2 and "was written for s3://inputs/photos" in other.output
    missing = _discover_cli(["s3://no-such-bucket/x", "-o", str(tmp_path / "m.json")])
    assert missing.exit_code == 2 and "no-such-bucket" in missing.output


def test_discovered_manifest_renders_through_run_archive(prefect_env, tiny_model_dir, tmp_path):
    from dreammover_flows.cli import register

    import typer

    arc = make_archive(tmp_path / "arc")  # 320x240 photos; the clips are rendered at 64 px
    manifest = tmp_path / "manifest.json"
    result = _discover_cli([str(arc.root), "-o", str(manifest)])
    assert result.exit_code == 0, result.output
    pairs = json.loads(manifest.read_text())["pairs"]
    assert {(p["image0"], p["image1"]) for p in pairs} == arc.pairs
    fast = dict(size=64, num_frames=2, frames_per_batch=2, lora_steps=1, lora_rank=4, num_inference_steps=4,
                inversion_steps=2, feature_step=1)
    app = typer.Typer()
    register(app)
    run = CliRunner().invoke(app, ["run-archive", str(arc.root), "--manifest", str(manifest), "-o",
                                   str(tmp_path / "out"), "--model", str(tiny_model_dir), "--device", "cpu",
                                   "--format", "gif", "--cache", str(tmp_path / "cache"),
                                   "--config", _write(tmp_path / "c.json", fast)])
    assert run.exit_code == 0, run.output
    for p in pairs:
        summary = json.loads((tmp_path / "out" / f"{p['id']}.json").read_text())
        assert summary["frames"] == fast["num_frames"] + 2
        assert (tmp_path / "out" / f"{p['id']}.gif").stat().st_size > 0


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)
