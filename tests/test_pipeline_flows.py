"""The Prefect flows end to end on the tiny model, against a real S3 HTTP server (moto_server) on 127.0.0.1.

Prefect runs on a temporary local API (prefect_test_harness) with a test-local PREFECT_HOME;
the S3 server is a subprocess on a free port, stopped at the end of the module.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from dreammover import InterpolationConfig

# Same place as conftest.PAIRS (not imported: test modules importing conftest is fragile).
PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "pairs"

# Small but complete: every stage runs, a pair takes a couple of seconds on 2 CPU cores.
FAST = dict(size=64, num_frames=4, frames_per_batch=2, lora_steps=2, lora_rank=4, num_inference_steps=10,
            inversion_steps=6, feature_step=3)


# -- fixtures: Prefect, S3 server, call counters -----------------------------------------------------




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 API (moto_server) on 127.0.0.1; boto3 reaches it through AWS_ENDPOINT_URL."""
    exe = shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server not installed (pip install 'moto[server]')")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("moto_server did not start")
        nowhere = tmp_path_factory.mktemp("aws") / "none"
        with pytest.MonkeyPatch.context() as mp:
            for k, v in dict(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                             AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=str(nowhere),
                             AWS_SHARED_CREDENTIALS_FILE=str(nowhere)).items():
                mp.setenv(k, v)
            from dreammover_tasks.storage import s3_client

            client = s3_client()
            for bucket in ("inputs", "outputs", "cache"):
                client.create_bucket(Bucket=bucket)
            yield client
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def calls(monkeypatch):
    """Counts of the expensive library calls that caching must avoid (tasks run in this process)."""
    from dreammover.pipeline import DreamMover

    counts = {"fit_lora": 0, "estimate_flows": 0, "denoise": 0}
    for name in counts:
        original = getattr(DreamMover, name)

        def spy(self, *a, _name=name, _original=original, **kw):
            counts[_name] += 1
            return _original(self, *a, **kw)
        monkeypatch.setattr(DreamMover, name, spy)
    return counts


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


def _upload_pair(client, bucket, prefix, pair_dir: Path, corrupt: bool = False):
    client.put_object(Bucket=bucket, Key=f"{prefix}/0.png", Body=(pair_dir / "0.png").read_bytes())
    client.put_object(Bucket=bucket, Key=f"{prefix}/1.png",
                      Body=b"this is not a png" if corrupt else (pair_dir / "1.png").read_bytes())


def _video(client, bucket, key, tmp_path):
    import cv2

    from dreammover.video import read_video

    path = tmp_path / Path(key).name
    path.write_bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    fps = cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)
    return read_video(path), fps


def _json(client, bucket, key):
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


# -- the pair flow -----------------------------------------------------------------------------------


def test_s3_storage_roundtrip(s3):
    from dreammover_tasks.storage import S3Storage, open_storage, read_uri, uri_exists

    store = open_storage("s3://cache/roundtrip")
    assert isinstance(store, S3Storage)
    uri = store.write_bytes("a/b.bin", b"123")
    assert uri == "s3://cache/roundtrip/a/b.bin" and read_uri(uri) == b"123"
    assert uri_exists(uri) and not store.exists("a/c.bin")
    store.write_bytes("z.txt", b"")
    assert store.list() == ["a/b.bin", "z.txt"] and store.list("a") == ["a/b.bin"]


def test_pair_flow_on_s3_end_to_end_and_caches(s3, prefect_env, model, dog_pair, calls, tmp_path):
    from dreammover_flows.pair import interpolate_pair

    _upload_pair(s3, "inputs", "pairs/dog", dog_pair[0].parent)
    config = InterpolationConfig(**FAST)
    run = dict(image0="s3://inputs/pairs/dog/0.png", image1="s3://inputs/pairs/dog/1.png",
               output="s3://outputs/clips/dog.mp4", model=model, cache="s3://cache/pair")

    first = interpolate_pair(config=config, **run)
    frames, fps = _video(s3, "outputs", "clips/dog.mp4", tmp_path)
    assert len(frames) == config.num_frames + 2 and frames[0].shape == (64, 64, 3)
    assert fps == pytest.approx(10.0)
    summary = _json(s3, "outputs", "clips/dog.json")
    assert summary["frames"] == 6 and summary["output"] == "s3://outputs/clips/dog.mp4"
    assert summary["stages"]["lora"] == {"status": "computed", "unet_evals": 2 * FAST["lora_steps"],
                                         "seconds": pytest.approx(summary["stages"]["lora"]["seconds"])}
    assert summary["stages"]["inversion"]["status"] == "computed"
    assert summary["stages"]["denoise"]["chunks"] == 2 == summary["stages"]["denoise"]["computed"]
    assert calls == {"fit_lora": 1, "estimate_flows": 1, "denoise": 2}
    # Tensors travel as safetensors objects in the cache bucket, named by their keys.
    keys = {k["Key"].split("/")[1] for k in s3.list_objects_v2(Bucket="cache", Prefix="pair/")["Contents"]}
    assert {"prepared", "lora", "inversion", "chunks", "frames"} <= keys
    assert "clips" not in keys  # the clip is written once, to its output only (#19)
    assert first["cache"]["lora"].startswith("s3://cache/pair/lora/")

    # Same pair again: nothing expensive runs, Prefect reports the cached task states.
    again = interpolate_pair(config=config, **run)
    assert calls == {"fit_lora": 1, "estimate_flows": 1, "denoise": 2}
    assert again["stages"]["lora"]["status"] == again["stages"]["inversion"]["status"] == "reused"
    assert again["stages"]["lora"]["unet_evals"] == 0 and again["stages"]["denoise"]["computed"] == 0

    # Another fps only re-encodes.
    slower = interpolate_pair(config=config, fps=5.0, **run)
    assert calls == {"fit_lora": 1, "estimate_flows": 1, "denoise": 2}
    frames5, fps5 = _video(s3, "outputs", "clips/dog.mp4", tmp_path)
    assert fps5 == pytest.approx(5.0) and len(frames5) == 6 and slower["fps"] == 5.0

    # More frames: the LoRA and the inversion/flow are reused, only new chunks render.
    more = interpolate_pair(config=config.model_copy(update=dict(num_frames=6)), **run)
    assert calls["fit_lora"] == 1 and calls["estimate_flows"] == 1 and calls["denoise"] == 5
    assert more["frames"] == 8 and more["stages"]["lora"]["status"] == "reused"

    # Another LoRA rank must refit the LoRA (and so redo the inversion under it).
    interpolate_pair(config=config.model_copy(update=dict(lora_rank=2)), **run)
    assert calls["fit_lora"] == 2 and calls["estimate_flows"] == 2


def test_dask_local_cluster_renders_same_frames(s3, prefect_env, model, dog_pair, calls):
    from dreammover_flows.pair import interpolate_pair
    from dreammover_tasks.artifacts import get_images

    _upload_pair(s3, "inputs", "pairs/dog", dog_pair[0].parent)
    config = InterpolationConfig(**FAST)
    run = dict(image0="s3://inputs/pairs/dog/0.png", image1="s3://inputs/pairs/dog/1.png", model=model,
               config=config)
    threaded = interpolate_pair(output="s3://outputs/dask/threads.mp4", cache="s3://cache/dask", **run)
    a = get_images(threaded["cache"]["frames"])
    # Same LoRA and inversion (cached), but every chunk re-rendered on the Dask cluster.
    dask = interpolate_pair(output="s3://outputs/dask/dask.mp4", cache="s3://cache/dask", dask="local:2",
                            refresh="frames", **run)
    assert dask["stages"]["lora"]["status"] == dask["stages"]["inversion"]["status"] == "reused"
    assert dask["stages"]["denoise"]["computed"] == 2 and calls["denoise"] == 4
    workers = dask["stages"]["denoise"]["workers"]
    assert workers and all(w.startswith(("inproc://", "tcp://")) for w in workers), workers
    assert not any(w.startswith(("inproc://", "tcp://")) for w in threaded["stages"]["denoise"]["workers"])
    b = get_images(dask["cache"]["frames"])
    assert len(a) == len(b) == 6
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1

    # frames_per_batch "auto" on a pool of 2: the lone pair's δ frames split over both workers
    # (2 chunks), where in this process they are one chunk; the frames stay the same.
    auto = config.model_copy(update=dict(frames_per_batch="auto"))
    run["config"] = auto
    here = interpolate_pair(output="s3://outputs/dask/auto-here.mp4", cache="s3://cache/dask", **run)
    pool = interpolate_pair(output="s3://outputs/dask/auto-pool.mp4", cache="s3://cache/dask", dask="local:2", **run)
    assert here["stages"]["denoise"]["chunks"] == 1 and pool["stages"]["denoise"]["chunks"] == 2
    # Its halves are the chunks of the frames_per_batch=2 run above, which the cache already holds.
    assert pool["stages"]["denoise"]["computed"] == 0 and calls["denoise"] == 5
    for x, y in zip(get_images(here["cache"]["frames"]), get_images(pool["cache"]["frames"])):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


# -- the archive flow and its CLI ---------------------------------------------------------------------


def _cli(args):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, args)


def _report(client, prefix):
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="outputs", Prefix=f"{prefix}/_runs/")["Contents"])
    return _json(client, "outputs", keys[-1]), len(keys)


def test_archive_with_a_corrupt_pair_is_partial_and_reruns_skip(s3, prefect_env, model, calls, tmp_path):
    lion = PAIRS / "lion"
    if not (lion / "0.png").exists():
        pytest.skip("../shared/fixtures/pairs/lion is not present")
    _upload_pair(s3, "inputs", "archive/dog", PAIRS / "dog")
    _upload_pair(s3, "inputs", "archive/2024/lion", lion)
    _upload_pair(s3, "inputs", "archive/bad", PAIRS / "dog", corrupt=True)
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps(FAST))
    args = ["run-archive", "s3://inputs/archive", "-o", "s3://outputs/arch", "--model", model.model,
            "--device", "cpu", "--config", str(cfg), "--cache", "s3://cache/archive"]

    result = _cli(args)
    assert result.exit_code == 3, result.output  # partial: a distinct exit code
    report, n = _report(s3, "arch")
    assert (report["status"], report["done"], report["skipped"], report["failed"]) == ("partial", 2, 0, 1)
    (bad,) = [e for e in report["pairs"] if e["status"] == "failed"]
    assert bad["pair"] == "bad" and "s3://inputs/archive/bad/1.png" in bad["reason"]
    assert "not a readable image" in bad["reason"]
    for pid in ("dog", "2024/lion"):
        frames, _ = _video(s3, "outputs", f"arch/{pid}.mp4", tmp_path)
        assert len(frames) == FAST["num_frames"] + 2
        assert _json(s3, "outputs", f"arch/{pid}.json")["pair"] == pid
    assert "Contents" not in s3.list_objects_v2(Bucket="outputs", Prefix="arch/bad")
    assert calls["fit_lora"] == 2
    assert "partial" in result.output and "not a readable image" in result.output

    # Re-run: finished pairs are skipped (nothing is fitted), the bad one is still reported.
    result = _cli(args)
    assert result.exit_code == 3, result.output
    report, n2 = _report(s3, "arch")
    assert n2 == n + 1 and (report["done"], report["skipped"], report["failed"]) == (0, 2, 1)
    assert calls["fit_lora"] == 2 and calls["denoise"] == 4

    # --force re-renders the finished pairs from the caches: no LoRA fit, no flow estimation.
    result = _cli(args + ["--force"])
    report, _ = _report(s3, "arch")
    assert (report["done"], report["skipped"], report["failed"]) == (2, 0, 1)
    assert calls["fit_lora"] == 2 and calls["estimate_flows"] == 2
    assert {e["stages"]["lora"] for e in report["pairs"] if e["status"] == "done"} == {"reused"}


def test_archive_all_good_exits_zero_locally(prefect_env, model, tmp_path):
    from dreammover.sample import write_sample_pair

    write_sample_pair(tmp_path / "in" / "sample", 64)
    result = _cli(["run-archive", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", model.model,
                   "--device", "cpu", "--size", "64", "--frames", "2", "--format", "gif",
                   "--cache", str(tmp_path / "cache"), "--config", _write(tmp_path / "c.json", FAST)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "sample.gif").stat().st_size > 0
    summary = json.loads((tmp_path / "out" / "sample.json").read_text())
    assert summary["frames"] == 4 and summary["format"] == "gif"


def _write(path: Path, data: dict) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def test_archive_state_is_partial_with_reason_and_reruns_follow_the_settings(prefect_env, model, calls, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from dreammover_flows.archive import ArchiveIncomplete, interpolate_archive

    from conftest import fixture_pair

    dog = fixture_pair("dog")
    src = tmp_path / "src"
    shutil.copytree(dog, src / "dog", ignore=shutil.ignore_patterns("*.mp4", "*.gif"))
    (src / "broken pair").mkdir()
    shutil.copy(dog / "0.png", src / "broken pair" / "0.png")
    (src / "broken pair" / "1.png").write_bytes(b"not an image")
    config = InterpolationConfig(**FAST)
    run = dict(source=str(src), output=str(tmp_path / "out"), model=model, cache=str(tmp_path / "cache"))

    state = interpolate_archive(config=config, return_state=True, **run)
    # Not plain Completed: alerts and the UI see the failed pair, and the exception carries the report.
    assert state.is_failed() and state.name == "Partial" and "broken pair" in state.message
    report = state.result(raise_on_failure=False).report
    assert isinstance(state.result(raise_on_failure=False), ArchiveIncomplete)
    assert (report["status"], report["done"], report["failed"]) == ("partial", 1, 1)
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[
            "archive-report"])), limit=1, sort="CREATED_DESC")
        assert "broken pair" in artifact.data and "not a readable image" in artifact.data
        from dreammover_tasks.names import artifact_key

        key = artifact_key("clip", "dog", str(tmp_path / "out" / "dog.mp4"))  # per output, not one per pair name
        links = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      limit=1, sort="CREATED_DESC")
        assert links and links[0].data.endswith("/out/dog.mp4)")  # a link to the published clip
    assert calls["fit_lora"] == 1 and not (tmp_path / "out" / "_leases" / "dog.json").exists()

    # Unchanged: skipped. More frames: re-rendered from the cached LoRA and flow.
    again = interpolate_archive(config=config, return_state=True, **run).result(raise_on_failure=False).report
    assert {e["pair"]: e["status"] for e in again["pairs"]} == {"dog": "skipped", "broken pair": "failed"}
    more = config.model_copy(update=dict(num_frames=6))
    report = interpolate_archive(config=more, return_state=True, **run).result(raise_on_failure=False).report
    (dog,) = [e for e in report["pairs"] if e["pair"] == "dog"]
    assert dog["status"] == "done" and dog["stages"]["lora"] == dog["stages"]["inversion"] == "reused"
    assert calls["fit_lora"] == 1 and calls["estimate_flows"] == 1
    summary = json.loads((tmp_path / "out" / "dog.json").read_text())
    assert summary["frames"] == 8 and summary["config"]["num_frames"] == 6


def test_archive_holds_short_leases_and_renews_them_while_it_runs(prefect_env, monkeypatch, tmp_path):
    import dreammover_flows.archive as archive
    from dreammover_tasks import leases

    for side in ("0", "1"):
        (tmp_path / "src" / "dog").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "dog" / f"{side}.png").write_bytes(b"x")
    lease = tmp_path / "out" / "_leases" / "dog.json"
    seen = []

    def rendering(todo, params, entries, finished=None):  # stands in for the pair flows: watches the lease
        for _ in range(3):
            seen.append((time.time(), json.loads(lease.read_text())))
            time.sleep(0.8)
        for pair, clip in todo:
            entries[pair.id] = {"pair": pair.id, "status": "done", "output": clip}

    monkeypatch.setattr(archive, "_run_here", rendering)
    monkeypatch.setattr(leases, "TTL", 1.5)  # renewed every 0.5 s
    state = archive.interpolate_archive(source=str(tmp_path / "src"), output=str(tmp_path / "out"),
                                        pair_timeout=3600, return_state=True)
    assert state.result()["done"] == 1 and len(seen) == 3
    assert {lease["holder"] for _, lease in seen} == {str(state.state_details.flow_run_id)}
    # The ttl, not the pair timeout, bounds each lease; the heartbeat keeps pushing it out.
    assert all(now < lease["expires"] <= now + 1.5 for now, lease in seen)
    assert seen[-1][1]["expires"] > seen[0][1]["expires"]
    assert not lease.exists()  # released at the end of the run
