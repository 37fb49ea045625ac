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
    from dreammover_tasks.artifacts import put_tensors

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
    from dreammover_tasks.artifacts import get_tensors, put_tensors

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

    from dreammover_tasks.artifacts import get_images, put_images

    first = [np.full((4, 4, 3), 1, np.uint8)]
    uri = put_images(cache, "frames/f.safetensors", first, overwrite=False)
    assert put_images(cache, "frames/f.safetensors", [np.zeros((4, 4, 3), np.uint8)], overwrite=False) == uri
    assert np.array_equal(get_images(uri)[0], first[0])


def test_a_fit_that_loses_the_lora_key_inverts_under_the_winners_weights(prefect_env, tiny_model_dir, tmp_path):
    """fit-pair fits and inverts in one task: when another producer stores the pair's LoRA while this one
    fits (the storage gains the object mid-fit: a real file write), the winner's weights stand, and the
    inversion stored must be the one made under them, not under the weights that lost."""
    from render_parity import write_photos

    from dreammover import InterpolationConfig
    from dreammover.state import PairState
    from dreammover_tasks.artifacts import get_images, lora_key, put_tensors
    from dreammover_tasks.fit_pair import fit_pair
    from dreammover_tasks.models import MODELS, ModelSpec, load_model
    from dreammover_tasks.prepare import prepare_images
    from dreammover_tasks.storage import read_uri

    cache, model = str(tmp_path / "cache"), ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")
    config = InterpolationConfig(size=64, num_frames=2, lora_steps=4, lora_rank=4, lora_lr=5e-2,
                                 num_inference_steps=10, inversion_steps=6, feature_step=3)
    p0, p1 = write_photos(tmp_path / "photos")
    prepared = prepare_images(str(p0), str(p1), config, cache)
    identity = load_model(model).identity
    lora_name = f"lora/{lora_key(prepared.hash, identity, config, cache)}.safetensors"
    images = get_images(prepared.uri)

    def state_under(weights) -> PairState:
        with MODELS.use(model) as m:
            m.dm.use_lora(weights, config.lora_rank)
            m.forget_lora()
            return m.dm.fit_pair(images, config, lora="active").state

    with MODELS.use(model) as m:  # the other producer's weights: the same pair fitted from another seed
        theirs = m.dm.fit_pair(images, config.model_copy(update={"seed": 99})).lora
        ours = m.dm.fit_pair(images, config).lora
        m.forget_lora()
        written = []

        def store_theirs_mid_fit(*_):
            if not written:
                written.append(put_tensors(cache, lora_name, theirs, {"rank": config.lora_rank}))

        hook = m.dm.components.unet.register_forward_pre_hook(store_theirs_mid_fit)
    try:
        result = fit_pair(prepared, model, config, cache)
    finally:
        hook.remove()
    assert written  # the object did appear during the fit
    stored = PairState.from_bytes(read_uri(result.inversion.uri))
    expected, losing = state_under(theirs), state_under(ours)
    assert not torch.equal(expected.z_T, losing.z_T)  # the two LoRAs do give different inversions
    assert torch.equal(stored.z_T, expected.z_T) and torch.equal(stored.z_T_to_0, expected.z_T_to_0)
    from dreammover_tasks.artifacts import get_tensors

    kept, _ = get_tensors(result.lora.uri)
    assert all(torch.equal(kept[k], theirs[k]) for k in theirs)  # the first writer's weights stand
