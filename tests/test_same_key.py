"""Two producers of one content key (issue #15 item 7): identical photos in two folders fit, invert and
render under the same keys at the same moment, and the last writer won. With overwrite=False the first
writer wins and every producer is handed the one object. Real files and the local moto S3 server.
"""
from __future__ import annotations

import threading

import pytest
import torch

from fault_harness import S3_ENV, moto_server


@pytest.fixture(params=["local", "s3"])
def cache(request, tmp_path, monkeypatch):
    if request.param == "local":
        yield str(tmp_path / "cache")
        return
    import boto3

    with moto_server() as url:
        nowhere = tmp_path / "no-aws-config"
        for k, v in {**S3_ENV, "AWS_ENDPOINT_URL": url, "AWS_CONFIG_FILE": str(nowhere),
                     "AWS_SHARED_CREDENTIALS_FILE": str(nowhere)}.items():
            monkeypatch.setenv(k, v)
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="cache")
        yield "s3://cache/run"


def _race(cache: str, key: str, producers: int, overwrite: bool) -> list[str]:
    """`producers` threads write different tensors to one key at once; the URIs they were handed."""
    from tasks.artifacts import put_tensors

    start, uris, errors = threading.Barrier(producers), [], []

    def produce(i: int) -> None:
        try:
            start.wait()
            uris.append(put_tensors(cache, key, {"w": torch.full((64, 64), float(i))}, {"by": i}, overwrite))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return uris


def test_first_writer_of_a_content_key_wins_and_every_producer_gets_its_object(cache):
    from tasks.artifacts import get_tensors, put_tensors

    uris = _race(cache, "lora/k.safetensors", 8, overwrite=False)
    assert len(set(uris)) == 1
    tensors, meta = get_tensors(uris[0])
    winner = int(meta["by"])
    assert torch.equal(tensors["w"], torch.full((64, 64), float(winner)))  # whole, one producer's object
    # A producer arriving later leaves it in place (before: the last writer replaced it).
    for late in range(3):
        assert put_tensors(cache, "lora/k.safetensors", {"w": torch.zeros(2)}, {"by": 100 + late},
                           overwrite=False) == uris[0]
    assert get_tensors(uris[0])[1]["by"] == str(winner)
    # A recompute (overwrite=True) does replace a suspect object.
    put_tensors(cache, "lora/k.safetensors", {"w": torch.zeros(2)}, {"by": 999})
    assert get_tensors(uris[0])[1]["by"] == "999"


def test_put_images_passes_overwrite_on(cache):
    import numpy as np

    from tasks.artifacts import get_images, put_images

    first = [np.full((4, 4, 3), 1, np.uint8)]
    uri = put_images(cache, "frames/f.safetensors", first, overwrite=False)
    assert put_images(cache, "frames/f.safetensors", [np.zeros((4, 4, 3), np.uint8)], overwrite=False) == uri
    assert np.array_equal(get_images(uri)[0], first[0])
