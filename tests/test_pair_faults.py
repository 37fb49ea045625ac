"""Storage faults in the pair and archive flows (issue #15 items 5, 6): retries on every storage task and
storage call, no empty photo version in a fingerprint, leasing errors that fail one pair, no missing
clip reported as ok. Faults go into real components: moto_server behind fault_harness.FaultyProxy, real files.
"""
from __future__ import annotations

import pytest

from fault_harness import S3_ENV, FaultyProxy, moto_server


@pytest.fixture
def faulty_s3(monkeypatch, tmp_path):
    """moto behind a FaultyProxy; boto3 (the code under test) talks to the proxy, `direct` to moto."""
    import boto3

    with moto_server() as upstream, FaultyProxy(upstream, seed=3) as proxy:
        nowhere = tmp_path / "no-aws-config"
        for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": proxy.url, "AWS_CONFIG_FILE": str(nowhere),
                     "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}.items():
            monkeypatch.setenv(k, v)
        direct = boto3.client("s3", endpoint_url=upstream, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        for bucket in ("inputs", "outputs"):
            direct.create_bucket(Bucket=bucket)
        yield proxy, direct


def _storage_tasks():
    """Every Prefect task of the pipeline modules that reads or writes storage."""
    import importlib

    from prefect import Task

    found = {}
    for module in ("tasks.ingest", "tasks.prepare", "tasks.encode", "tasks.upload", "tasks.invert",
                   "tasks.denoise", "tasks.decode", "tasks.lora"):
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, Task):
                found[value.name] = value
    return found


def test_every_storage_task_retries_transient_failures():
    """prepare-images and encode-clip had no retries: one refused connection failed the pair in an outage."""
    from tasks.retry import retry_if_transient

    found = _storage_tasks()
    assert {"prepare-images", "encode-clip", "upload-clip", "write-summary", "fit-lora"} <= set(found)
    lacking = sorted(name for name, t in found.items()
                     if t.retries < 3 or t.retry_condition_fn is not retry_if_transient)
    assert lacking == [], f"storage tasks without transient retries: {lacking}"


def test_photo_inputs_raises_on_a_storage_error_instead_of_an_empty_version(faulty_s3):
    """An empty version taken mid-outage went into the fingerprint, so every later run re-rendered the pair."""
    from tasks.ingest import photo_inputs
    from tasks.storage import StorageError

    proxy, direct = faulty_s3
    direct.put_object(Bucket="inputs", Key="dog/0.png", Body=b"zero")
    direct.put_object(Bucket="inputs", Key="dog/1.png", Body=b"one")
    healthy = photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png")
    assert all(healthy["versions"]) and healthy["versions"][0] != healthy["versions"][1]
    # A photo that is not there is "missing" (''), not an error: the pair flow reports it.
    assert photo_inputs("s3://inputs/dog/0.png", "s3://inputs/cat/1.png")["versions"][1] == ""

    proxy.outage(600)
    with pytest.raises(StorageError, match="inputs/dog/0.png"):
        photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png", attempts=1)
    assert proxy.counts["down"] > 0
    proxy.down_until = 0.0  # back up: the same versions as before the outage
    assert photo_inputs("s3://inputs/dog/0.png", "s3://inputs/dog/1.png") == healthy
