"""A model retrained in place keeps its path, so its clip fingerprint (which names the model by its spec) is
unchanged: the archive must still see that the weights changed, re-render the pair and fit a new LoRA.
Before, the re-run skipped the pair as "up to date" with the old weights' clip.
"""
from __future__ import annotations

import shutil

import torch

from dreammover import InterpolationConfig
from fault_harness import FAST, CallCounter, distinct_pair


def _report(state) -> dict:
    return state.result() if state.is_completed() else state.result(raise_on_failure=False).report


def test_an_archive_rerenders_pairs_whose_model_was_retrained_in_place(prefect_env, tiny_model_dir, monkeypatch,
                                                                       tmp_path):
    from safetensors.torch import load_file, save_file

    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.models import ModelSpec

    folder = shutil.copytree(tiny_model_dir, tmp_path / "my-finetune")
    distinct_pair(tmp_path / "src" / "p0", 0)
    fits = CallCounter(monkeypatch, "fit_lora")
    run = dict(source=str(tmp_path / "src"), output=str(tmp_path / "out"), cache=str(tmp_path / "cache"),
               model=ModelSpec(model=str(folder), device="cpu", dtype="fp32"), config=InterpolationConfig(**FAST))

    assert _report(interpolate_archive(return_state=True, **run))["done"] == 1
    assert _report(interpolate_archive(return_state=True, **run))["skipped"] == 1  # unchanged: skipped
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    save_file({k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}, weights)  # retrained in place

    again = _report(interpolate_archive(return_state=True, **run))
    (entry,) = again["pairs"]
    assert entry["status"] == "done" and entry["stages"]["lora"] == "computed", entry
    assert fits["fit_lora"] == 2  # a new LoRA for the new weights, none for the unchanged re-run
    assert _report(interpolate_archive(return_state=True, **run))["skipped"] == 1  # and now up to date again
