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

from tasks.models import ModelCache, ModelSpec


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
    with caplog.at_level(logging.WARNING, logger="tasks.models"):
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
