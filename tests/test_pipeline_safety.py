"""Pipeline safety without a Prefect server: error classes, leases, re-run decisions, archive edge cases."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from dreammover import InterpolationConfig

FAST = InterpolationConfig(size=64, num_frames=4, lora_steps=2)


@pytest.fixture(autouse=True)
def _local_prefect_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _client_error(code: str, status: int = 400):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def test_storage_errors_are_sorted_into_transient_and_permanent(tmp_path):
    from botocore.exceptions import EndpointConnectionError

    from dreammover_tasks.retry import is_transient
    from dreammover_tasks.storage import StorageError, TransientStorageError, _s3_error, open_storage

    for code, status in (("SlowDown", 503), ("InternalError", 500), ("Whatever", 502)):
        assert isinstance(_s3_error("write", "s3://b/k", _client_error(code, status)), TransientStorageError)
    for code in ("AccessDenied", "NoSuchBucket", "InvalidAccessKeyId"):
        err = _s3_error("write", "s3://b/k", _client_error(code, 403))
        assert type(err) is StorageError and code in str(err) and not is_transient(err)
    lost = _s3_error("read", "s3://b/k", EndpointConnectionError(endpoint_url="http://x"))
    assert isinstance(lost, TransientStorageError) and is_transient(lost)
    # A folder that cannot be created is a permanent error naming the path (no retry loop).
    with pytest.raises(StorageError, match="cannot write /proc/dreammover") as info:
        open_storage("/proc/dreammover").write_bytes("x.bin", b"1")
    assert not is_transient(info.value)
    assert is_transient(torch.cuda.OutOfMemoryError("CUDA out of memory")) and not is_transient(ValueError("x"))


def test_retry_condition_retries_only_transient_failures():
    from prefect.states import Failed

    from dreammover_tasks.retry import retry_if_transient
    from dreammover_tasks.storage import StorageError, TransientStorageError

    assert retry_if_transient(None, None, Failed(data=TransientStorageError("slow down")))
    assert not retry_if_transient(None, None, Failed(data=StorageError("no such bucket")))


def test_local_create_is_exclusive_and_move_publishes(tmp_path):
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path)
    assert store.create("a/lock", b"1") and not store.create("a/lock", b"2")
    assert store.read_bytes("a/lock") == b"1"
    v1 = store.version("a/lock")
    store.write_bytes(".tmp", b"clip")
    assert store.move(".tmp", "out/clip.mp4").endswith("out/clip.mp4")
    assert store.read_bytes("out/clip.mp4") == b"clip" and not store.exists(".tmp")
    store.delete("a/lock")
    store.delete("a/lock")  # already gone: no error
    assert store.version("a/lock") == "" and v1


def test_leases_keep_overlapping_runs_apart(tmp_path):
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path)
    assert leases.acquire(store, "2024/dog", "run-a", ttl=60) is None
    assert leases.acquire(store, "2024/dog", "run-a", ttl=60) is None  # re-entrant for its holder
    other = leases.acquire(store, "2024/dog", "run-b", ttl=60)
    assert other["holder"] == "run-a"
    leases.release(store, "2024/dog", "run-b")  # never deletes another run's lease
    assert leases.acquire(store, "2024/dog", "run-b", ttl=60)["holder"] == "run-a"
    leases.release(store, "2024/dog", "run-a")
    assert leases.acquire(store, "2024/dog", "run-b", ttl=-1) is None  # free again
    # An expired lease (its run died) is taken over.
    assert leases.acquire(store, "2024/dog", "run-c", ttl=60) is None


def test_renew_extends_only_the_holders_live_lease(tmp_path):
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path)
    assert leases.acquire(store, "dog", "run-a", ttl=5) is None
    before = json.loads((tmp_path / "_leases" / "dog.json").read_bytes())["expires"]
    assert leases.renew(store, "dog", "run-a", ttl=60)
    assert json.loads((tmp_path / "_leases" / "dog.json").read_bytes())["expires"] > before + 50
    assert not leases.renew(store, "dog", "run-b", ttl=600)  # never another holder's lease
    assert json.loads((tmp_path / "_leases" / "dog.json").read_bytes())["holder"] == "run-a"
    assert not leases.renew(store, "cat", "run-a", ttl=60) and not (tmp_path / "_leases" / "cat.json").exists()
    # An expired lease nobody took over is still ours to renew: a takeover would have changed its
    # version, so the compare-and-swap can't overwrite one. Once taken over, it is lost.
    assert leases.acquire(store, "fox", "run-a", ttl=-1) is None
    assert leases.renew(store, "fox", "run-a", ttl=60)
    assert leases.acquire(store, "owl", "run-a", ttl=-1) is None
    assert leases.acquire(store, "owl", "run-b", ttl=60) is None
    assert not leases.renew(store, "owl", "run-a", ttl=60)
    assert json.loads((tmp_path / "_leases" / "owl.json").read_bytes())["holder"] == "run-b"


def test_a_lease_nobody_renews_is_taken_over_once_it_expires(tmp_path):
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path)
    keeper = leases.LeaseKeeper(store, "crashed", ttl=0.3)
    assert keeper.acquire("dog") is None  # taken, but the run "dies": its keeper never runs
    assert leases.acquire(store, "dog", "next", ttl=60)["holder"] == "crashed"
    time.sleep(0.4)
    assert leases.acquire(store, "dog", "next", ttl=60) is None
    assert not leases.renew(store, "dog", "crashed", ttl=60)  # the dead run cannot take it back


def test_lease_keeper_renews_while_alive_and_releases_on_exit(tmp_path, caplog):
    from dreammover_tasks import leases
    from dreammover_tasks.storage import open_storage

    store = open_storage(tmp_path)
    path = tmp_path / "_leases" / "dog.json"
    with leases.LeaseKeeper(store, "run-a", ttl=1.0, interval=0.1) as keeper:
        assert keeper.acquire("dog") is None and keeper.acquire("cat") is None
        assert keeper.acquire("dog") is None and keeper.held == {"dog", "cat"}
        first = json.loads(path.read_bytes())["expires"]
        time.sleep(1.3)  # longer than the ttl: only the heartbeat keeps it
        assert json.loads(path.read_bytes())["expires"] > first
        assert leases.acquire(store, "dog", "run-b", ttl=60)["holder"] == "run-a"
        # Another run took "cat" over (as after a long stall): the keeper lets it go and warns.
        (tmp_path / "_leases" / "cat.json").write_text(json.dumps({"holder": "run-b", "expires": time.time() + 60}))
        for _ in range(50):
            if "cat" not in keeper.held:
                break
            time.sleep(0.05)
        assert keeper.held == {"dog"} and "lease cat: lost" in caplog.text
        thread = keeper._thread
    assert not thread.is_alive() and not path.exists()  # stopped, and the lease released
    assert json.loads((tmp_path / "_leases" / "cat.json").read_bytes())["holder"] == "run-b"  # not ours: kept


def test_lease_keeper_keeps_a_lease_through_a_failed_renewal(tmp_path, monkeypatch, caplog):
    from dreammover_tasks import leases
    from dreammover_tasks.storage import StorageError, open_storage

    store = open_storage(tmp_path)
    keeper = leases.LeaseKeeper(store, "run-a", ttl=60)
    assert keeper.acquire("dog") is None

    def throttled(key, data, version):
        raise StorageError("SlowDown")

    monkeypatch.setattr(store, "replace_if", throttled)
    keeper.renew_all()  # one failed beat: still ours, retried on the next one
    assert keeper.held == {"dog"} and "lease dog: renewal failed" in caplog.text


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_pair_folders_with_spaces_accents_and_gif(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    for pid in ("été/chien", "my pair"):
        _touch(tmp_path / "src" / pid / "0.gif")
        _touch(tmp_path / "src" / pid / "1.png")
    pairs = {p.id: p for p in discover_pairs(str(tmp_path / "src"))}
    assert pairs["été/chien"].problem is None and pairs["été/chien"].image0.endswith("0.gif")
    assert pairs["my pair"].problem is None
    assert set(pairs) == {"été/chien", "my pair"}


def _plan(tmp_path, manifest_rows, fps=10.0, config=FAST, force=False):
    from dreammover_flows.archive import _plan
    from dreammover_tasks.ingest import discover_pairs
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.storage import open_storage

    (tmp_path / "m.json").write_text(json.dumps(manifest_rows))
    pairs = discover_pairs(str(tmp_path / "src"), str(tmp_path / "m.json"))
    entries = {}
    todo = _plan(pairs, open_storage(tmp_path / "out"), entries,
                 dict(model=ModelSpec(model="tiny"), config=config, fps=fps, fmt="mp4", backend="dreammover"), force)
    return {p.id for p, _ in todo}, entries


def test_bad_manifest_entry_fails_only_that_pair_and_reruns_skip_only_unchanged_clips(tmp_path):
    from dreammover_flows.pair import fingerprint
    from dreammover_tasks.models import ModelSpec

    for side in ("0", "1"):
        _touch(tmp_path / "src" / "dog" / f"{side}.png")
    rows = [{"id": "dog", "image0": "dog/0.png", "image1": "dog/1.png"},
            {"id": "../up", "image0": "dog/0.png", "image1": "dog/1.png"}]
    todo, entries = _plan(tmp_path, rows)
    assert todo == {"dog"} and entries["../up"]["status"] == "failed" and "safe" in entries["../up"]["reason"]

    # A finished pair: skipped only while its summary records the clip the settings would give now.
    image0, image1 = str(tmp_path / "src" / "dog" / "0.png"), str(tmp_path / "src" / "dog" / "1.png")
    _touch(tmp_path / "out" / "dog.mp4")
    summary = {"fingerprint": fingerprint(image0, image1, ModelSpec(model="tiny"), FAST, 10.0, "mp4")}
    (tmp_path / "out" / "dog.json").write_text(json.dumps(summary))
    todo, entries = _plan(tmp_path, rows[:1])
    assert todo == set() and entries["dog"]["reason"] == "up to date"
    assert _plan(tmp_path, rows[:1], fps=5.0)[0] == {"dog"}
    assert _plan(tmp_path, rows[:1], config=FAST.model_copy(update=dict(num_frames=6)))[0] == {"dog"}
    assert _plan(tmp_path, rows[:1], config=FAST.model_copy(update=dict(seed=7)))[0] == {"dog"}
    assert _plan(tmp_path, rows[:1], force=True)[0] == {"dog"}
    # Batching knobs never change the clip: still up to date.
    assert _plan(tmp_path, rows[:1], config=FAST.model_copy(update=dict(frames_per_batch=1)))[0] == set()
    # A new photo under the same name changes its content version: re-rendered.
    time.sleep(0.01)
    _touch(tmp_path / "src" / "dog" / "1.png", b"new photo")
    assert _plan(tmp_path, rows[:1])[0] == {"dog"}


def _cli(args):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, args)


def test_cli_refuses_unwritable_output_and_empty_source_before_any_work(tmp_path):
    for side in ("0", "1"):
        _touch(tmp_path / "src" / "dog" / f"{side}.png")
    (tmp_path / "empty").mkdir()
    bad_out = _cli(["run-archive", str(tmp_path / "src"), "-o", "/proc/dreammover-out", "--model", "tiny"])
    assert bad_out.exit_code == 2 and "not writable" in bad_out.output
    empty = _cli(["run-archive", str(tmp_path / "empty"), "-o", str(tmp_path / "out"), "--model", "tiny"])
    assert empty.exit_code == 2 and "no pairs under" in empty.output and "--allow-empty" in empty.output
    assert not (tmp_path / "out" / "_runs").exists() or not list((tmp_path / "out" / "_runs").iterdir())


class _FakeDM:
    """Runs out of memory above `fits` frames per batch; records the batches it was asked for."""

    device = torch.device("cpu")

    def __init__(self, fits: int):
        self.fits, self.asked = fits, []

    def denoise(self, pair, deltas, config, profile):
        self.asked.append(config.frames_per_batch)
        if config.frames_per_batch > self.fits:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.arange(2 + len(deltas), dtype=torch.float32)


def test_out_of_memory_retries_the_chunk_with_smaller_batches():
    from dreammover_tasks.denoise import denoise_fitting

    config = FAST.model_copy(update=dict(frames_per_batch=8))
    dm = _FakeDM(fits=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dreammover_tasks.denoise.get_run_logger", lambda: __import__("logging").getLogger("t"))
        latents, batch = denoise_fitting(dm, None, [0.1] * 8, config, None)
        assert dm.asked == [8, 4, 2] and batch == 2 and latents.shape == (10,)
        with pytest.raises(torch.cuda.OutOfMemoryError):  # not even one frame fits: the task's retry decides
            denoise_fitting(_FakeDM(fits=0), None, [0.1] * 2, config, None)


def test_temporary_api_child_dies_with_a_sigkilled_parent(tmp_path):
    # The mechanism flows.local_api gives the uvicorn child: the kernel sends it SIGTERM when the
    # CLI process dies, even by SIGKILL (an atexit hook would never run).
    pidfile = tmp_path / "child.pid"
    code = ("import subprocess, sys, time; from dreammover_flows.local_api import _die_with_parent; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], "
            "preexec_fn=_die_with_parent); "
            f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    child = int(pidfile.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # A zombie still answers kill(0); it is reaped by init, so check its state too.
        try:
            if open(f"/proc/{child}/stat").read().split()[2] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its SIGKILLed parent")


def test_s3_conditional_create_move_and_permanent_errors(monkeypatch):
    moto = pytest.importorskip("moto")
    for k, v in dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                     AWS_DEFAULT_REGION="us-east-1").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from dreammover_tasks import leases
    from dreammover_tasks.storage import S3Storage, StorageError, TransientStorageError, s3_client

    with moto.mock_aws():
        client = s3_client()
        client.create_bucket(Bucket="outs")
        store = S3Storage("outs", "daily", client=client)
        # If-None-Match: * makes the lease a real test-and-set on S3.
        assert leases.acquire(store, "dog", "run-a", ttl=60) is None
        assert leases.acquire(store, "dog", "run-b", ttl=60)["holder"] == "run-a"
        store.write_bytes(".dog.mp4.x.partial", b"clip")
        assert store.move(".dog.mp4.x.partial", "dog.mp4") == "s3://outs/daily/dog.mp4"
        assert not store.exists(".dog.mp4.x.partial") and store.version("dog.mp4")
        with pytest.raises(StorageError, match="NoSuchBucket") as info:
            S3Storage("missing-bucket", "x", client=client).write_bytes("a", b"1")
        assert not isinstance(info.value, TransientStorageError)


def test_a_completed_pair_whose_state_lost_its_data_is_taken_from_its_own_summary(tmp_path):
    """The API can return a pair flow's final Completed state without data (a state update retried
    under SQLite lock contention made a finished pair count as failed); its summary decides."""
    import json
    import uuid

    from prefect.client.schemas.objects import StateDetails
    from prefect.exceptions import MissingResult
    from prefect.states import Completed

    from dreammover_flows.archive import _from_state
    from dreammover_tasks.ingest import PairSpec

    pair, clip, run = PairSpec(id="dog", image0="a/0.png", image1="a/1.png"), str(tmp_path / "dog.mp4"), uuid.uuid4()
    state = Completed(state_details=StateDetails(flow_run_id=run))  # what the API hands back: no data
    with pytest.raises(MissingResult):  # no summary: nothing says the pair finished
        _from_state(pair, state, clip)
    summary = {"output": clip, "seconds": 1.5, "stages": {"lora": {"status": "computed"}}, "flow_run_id": str(uuid.uuid4())}
    (tmp_path / "dog.json").write_text(json.dumps(summary))
    with pytest.raises(MissingResult):  # a summary of another (earlier) run is not this run's success
        _from_state(pair, state, clip)
    (tmp_path / "dog.json").write_text(json.dumps({**summary, "flow_run_id": str(run)}))
    entry = _from_state(pair, state, clip)
    assert entry["status"] == "done" and entry["output"] == clip and entry["stages"] == {"lora": "computed"}
    # A state that carries its data is used as it is.
    assert _from_state(pair, Completed(data={**summary, "seconds": 9.0}), clip)["seconds"] == 9.0


def test_racing_runs_get_one_lease_holder(tmp_path):
    """Local leases are created whole: with the file created empty and then written, a racing run read
    it as unreadable, deleted it and took the pair too (about a quarter of 4-way races had 2+ holders)."""
    import threading

    from dreammover_tasks import leases
    from dreammover_tasks.storage import LocalStorage

    store = LocalStorage(tmp_path)
    for trial in range(200):
        holders = []
        threads = [threading.Thread(target=lambda h=f"run-{i}": leases.acquire(store, f"p{trial}", h, 60) is None
                                    and holders.append(h)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(holders) == 1, (trial, holders)
