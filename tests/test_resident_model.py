"""The resident model after a failed model task (issue #15 item 1): dropped, reloaded fresh, said once.

The pool test fits one pair's LoRA on a one-worker Dask pool with an out-of-memory error injected
mid-fit (after the adapter is attached and trained), then re-renders another pair on that worker:
its frames must be the ones a fresh worker renders.
"""
from __future__ import annotations

import logging
import types

import numpy as np
import pytest
import torch

from dreammover_tasks.models import ModelCache, ModelSpec


class _Stand:
    """A loader as ModelCache sees one: built from a spec, with `dm.device`; counts how many were built."""

    built: list["_Stand"] = []

    def __init__(self, spec: ModelSpec):
        self.spec, self.dm = spec, types.SimpleNamespace(device=torch.device("cpu"))
        self.active_lora = "<unset>"
        _Stand.built.append(self)


def test_use_drops_the_model_on_any_exception_and_warns_once(caplog):
    _Stand.built.clear()
    cache, spec = ModelCache(), ModelSpec(model="tiny", device="cpu")
    with cache.use(spec, _Stand) as m:
        m.active_lora = "lora/pair-a"
    with caplog.at_level(logging.WARNING, logger="dreammover_tasks.models"):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            with cache.use(spec, _Stand) as m:
                assert m is _Stand.built[0]  # still resident before the failure
                m.active_lora = "half-fitted"
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    text = warnings[0].getMessage()
    assert "tiny" in text and "OutOfMemoryError" in text and "fresh weights" in text
    with cache.use(spec, _Stand) as m:
        assert m is _Stand.built[1] and m.active_lora == "<unset>"  # a fresh model, not the failed one
    assert cache.loads == 2 and len(_Stand.built) == 2
    with cache.use(spec, _Stand) as m:  # a successful task keeps it resident
        assert m is _Stand.built[1]
    assert cache.loads == 2


class _Other(_Stand):
    """A second kind of model (as LoadedT2V is beside LoadedModel): same spec, another loader."""


def test_capacity_two_keeps_two_kinds_resident_and_evicts_the_least_recently_used():
    _Stand.built.clear()
    cache = ModelCache(capacity=2)
    dm, t2v, svd = ModelSpec(model="tiny"), ModelSpec(model="tiny-t2v"), ModelSpec(model="tiny-svd")
    for _ in range(3):  # a pair interpolates, then restyles: three pairs, two loads
        with cache.use(dm, _Stand) as a:
            pass
        with cache.use(t2v, _Other) as b:
            pass
    assert cache.loads == 2 and dict(cache.loads_by_kind) == {"_Stand": 1, "_Other": 1}
    assert cache.resident() == [a, b]  # least recently used first
    with cache.use(ModelSpec(model="tiny"), _Other) as c:  # the loader is part of the key
        assert c is not a
    assert cache.resident() == [b, c]  # a (used longest ago) was evicted, b and c stay
    with cache.use(t2v, _Other) as again:
        assert again is b  # still resident: no load
    with cache.use(svd, _Stand):
        pass
    assert cache.resident()[0] is b and c not in cache.resident()  # c was now the least recently used
    assert cache.loads == 4


def test_capacity_one_swaps_models_as_before():
    _Stand.built.clear()
    cache = ModelCache(capacity=1)
    for _ in range(3):
        with cache.use(ModelSpec(model="tiny"), _Stand):
            assert len(cache.resident()) == 1
        with cache.use(ModelSpec(model="tiny-t2v"), _Other):
            assert len(cache.resident()) == 1
    assert cache.loads == 6 and dict(cache.loads_by_kind) == {"_Stand": 3, "_Other": 3}


def test_a_failure_drops_only_the_model_the_task_used():
    _Stand.built.clear()
    cache = ModelCache(capacity=2)
    with cache.use(ModelSpec(model="tiny"), _Stand) as dm:
        dm.active_lora = "lora/pair-a"
    with pytest.raises(RuntimeError, match="restyle blew up"):
        with cache.use(ModelSpec(model="tiny-t2v"), _Other):
            raise RuntimeError("restyle blew up")
    assert cache.resident() == [dm] and dm.active_lora == "lora/pair-a"  # untouched, in its known state
    with cache.use(ModelSpec(model="tiny-t2v"), _Other) as t2v:
        assert t2v is _Stand.built[-1] and len(_Stand.built) == 3  # the failed one reloaded fresh
    with cache.use(ModelSpec(model="tiny"), _Stand) as again:
        assert again is dm
    assert cache.loads == 3


def test_resident_models_comes_from_the_environment_with_a_clear_error(monkeypatch):
    from dreammover_tasks.models import resident_capacity

    monkeypatch.delenv("DREAMMOVER_RESIDENT_MODELS", raising=False)
    assert resident_capacity() == 2 and ModelCache().capacity == 2
    monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", "1")
    assert ModelCache().capacity == 1 and ModelCache(capacity=3).capacity == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("DREAMMOVER_RESIDENT_MODELS", bad)
        with pytest.raises(ValueError, match="DREAMMOVER_RESIDENT_MODELS must be a whole number >= 1") as err:
            resident_capacity()
        assert bad in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="at least one model"):
        ModelCache(capacity=0)


# -- a failed fit on a one-worker pool -------------------------------------------------------------------


def _inject_oom_in_lora_fits(on: bool) -> bool:
    """Run in the worker process: every LoRA fit trains its steps, then raises CUDA out-of-memory.

    Raised after the training loop, so the adapter is attached and trained when the error leaves
    the fit: what an OOM late in a real fit (the heaviest stage) leaves behind.
    """
    import dreammover.lora as lora

    real = getattr(lora, "_real_fit_steps", lora._fit_steps)
    lora._real_fit_steps = real

    def trained_then_out_of_memory(*args, **kwargs):
        real(*args, **kwargs)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected by the test)")

    lora._fit_steps = trained_then_out_of_memory if on else real
    return on


def _run(**kwargs) -> dict:
    """An archive run's report, whether it ended Completed or Failed/Partial."""
    from dreammover_flows.archive import interpolate_archive

    state = interpolate_archive(return_state=True, **kwargs)
    return state.result() if state.is_completed() else state.result(raise_on_failure=False).report


def _frames(output, pair: str) -> tuple[list[np.ndarray], dict]:
    """The rendered (uint8, pre-encoding) frames of `pair` from its summary's cache URI, and the summary."""
    import json

    from dreammover_tasks.artifacts import get_images

    summary = json.loads((output / f"{pair}.json").read_text())
    return get_images(summary["cache"]["frames"]), summary


@pytest.mark.faults
def test_failed_fit_on_a_resident_worker_leaves_no_trace_in_other_pairs_frames(prefect_env, tiny_model_dir,
                                                                             tmp_path):
    from distributed import Client, LocalCluster

    from dreammover import InterpolationConfig
    from fault_harness import FAST, distinct_pair
    from dreammover_flows.runners import GPU, WORKER_PRELOAD

    model = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")
    # A LoRA strong enough that rendering with the wrong adapter changes uint8 frames.
    config = InterpolationConfig(**{**FAST, "lora_steps": 4, "lora_lr": 5e-2})
    distinct_pair(tmp_path / "src-a" / "a", 0)
    distinct_pair(tmp_path / "src-b" / "b", 1)
    cache = str(tmp_path / "cache")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, resources=GPU, dashboard_address=None,
                      preload=[WORKER_PRELOAD]) as cluster, Client(cluster) as client:
        common = dict(model=model, config=config, cache=cache, dask=cluster.scheduler_address)
        # A fresh worker fits pair a's LoRA and renders it: the reference frames; a's LoRA is now active.
        first = _run(source=str(tmp_path / "src-a"), output=str(tmp_path / "out1"), **common)
        assert first["done"] == 1, first["pairs"]
        fresh, _ = _frames(tmp_path / "out1", "a")

        client.run(_inject_oom_in_lora_fits, True)
        failed = _run(source=str(tmp_path / "src-b"), output=str(tmp_path / "out2"), **common)
        (entry,) = failed["pairs"]
        assert entry["status"] == "failed" and "out of memory" in entry["reason"].lower(), entry
        client.run(_inject_oom_in_lora_fits, False)

        # Pair a again on the same worker: its LoRA and inversion come from the cache, its frames are
        # denoised anew (refresh=frames), with whatever adapter the worker holds.
        again = _run(source=str(tmp_path / "src-a"), output=str(tmp_path / "out3"), refresh="frames", **common)
        assert again["done"] == 1, again["pairs"]
        frames, summary = _frames(tmp_path / "out3", "a")
        pids = client.run(lambda: __import__("os").getpid())
    assert len(pids) == 1  # one worker process ran all three runs (no restart hid the fault)
    assert summary["stages"]["lora"]["status"] != "computed" and summary["stages"]["denoise"]["computed"] > 0
    assert len(frames) == len(fresh) == FAST["num_frames"] + 2
    differing = [i for i, (x, y) in enumerate(zip(fresh, frames)) if not np.array_equal(x, y)]
    assert not differing, f"frames {differing} differ from a fresh worker's: the failed fit's adapter was used"
