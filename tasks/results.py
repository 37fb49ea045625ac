"""Typed task results: what the pipeline's tasks hand each other (URIs and figures; tensors stay in storage).

Each artifact names its content key and URI in the cache storage (docs/pipeline.md, "One cache"); `run`
says whether this task computed it or found it stored, where, and what the work cost.
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TaskRun(_Result):
    """computed=False: the artifact was already in the cache storage (reused, nothing ran)."""

    computed: bool = False
    worker: str = ""
    model_loads: int = 0
    unet_evals: int = 0
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "computed" if self.computed else "reused"


class LoadedModelInfo(_Result):
    """The model identity every cache key carries, and where it was loaded."""

    identity: str
    run: TaskRun
    native_size: Optional[int] = None  # the long side a backend was trained at (SVD), else None


class Prepared(_Result):
    """Both photos at the working size (step 0), stored once under their content hash."""

    uri: str
    hash: str
    height: int
    width: int


class LoraArtifact(_Result):
    """The pair's LoRA (Sec. 3.4) as safetensors; uri None when LoRA is off (the plain UNet)."""

    key: str
    uri: Optional[str]
    rank: int
    run: TaskRun = TaskRun()
    final_loss: Optional[float] = None


class InversionArtifact(_Result):
    """PairState (z_T, z_T->0, both flows, prompt embedding; steps 2-5) as safetensors."""

    key: str
    uri: str
    run: TaskRun = TaskRun()


class FittedPairArtifacts(_Result):
    """Steps 1-5 of one pair: the model that keyed them, its LoRA and the inversion made under it."""

    model: LoadedModelInfo
    lora: LoraArtifact
    inversion: InversionArtifact


class ChunkArtifact(_Result):
    """Latents [2+k,C,h,w] of both endpoints and the k frames at `deltas` (steps 6-11)."""

    key: str
    uri: str
    deltas: list[float]
    run: TaskRun = TaskRun()
    frames_per_batch: Optional[int] = None


class FramesArtifact(_Result):
    """uint8 frames in clip order as one safetensors [B,H,W,3] (step 12, or a backend's render)."""

    key: str
    uri: str
    count: int = Field(ge=2)
    run: TaskRun = TaskRun()
    stage_seconds: dict[str, float] = {}


class RenderedFrames(_Result):
    """A pair rendered by one task (tasks/render.py): its fitted pair, δ chunks and decoded frames."""

    pair: FittedPairArtifacts
    chunks: list[ChunkArtifact]
    frames: FramesArtifact


class PublishedClip(_Result):
    """A clip written at its output (step 13), and the per-pair summary written beside it, if any."""

    uri: str
    frames: int
    fps: float
    format: str
    summary: Optional[dict] = None


class RestyleMask(_Result):
    """Where a restyle edits: a float mask (N,H,W) or (H,W) in [0,1], stored under its content hash."""

    key: str
    uri: str


class RestyledFrames(_Result):
    """A clip edited by restyle-clip (DreamMotion): the T2V model that keyed it, the edited frames, the settings."""

    model: LoadedModelInfo
    frames: FramesArtifact
    settings: dict
    peak_bytes: int = 0
