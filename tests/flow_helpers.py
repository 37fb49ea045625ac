"""Fixtures and helpers shared by the archive tests that run the pair flow in this process (chains, discovery)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    """The tiny model as the flows take it, on the CPU in fp32."""
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


@pytest.fixture
def fits(monkeypatch):
    """LoRA fits done in this process (the archive runs its pairs here, without a pool): a one-item counter."""
    from dreammover.pipeline import DreamMover

    count, original = [0], DreamMover.fit_lora

    def spy(self, *a, **kw):
        count[0] += 1
        return original(self, *a, **kw)
    monkeypatch.setattr(DreamMover, "fit_lora", spy)
    return count


def run_cli(args):
    """The pipeline's commands (run-pair, run-archive) invoked in this process."""
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import register

    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, args)
