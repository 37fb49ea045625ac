"""Per-stage wall times and UNet image-evaluation counts."""
from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


def synchronize(device: torch.device | None) -> None:
    """Wait for queued GPU work: a clock read before it would time the launch, not the work."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


_sync = synchronize


def reset_peak_memory(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: torch.device | None) -> float | None:
    """Peak GPU memory allocated by tensors since the last reset (None off CUDA)."""
    if device is None or device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


@dataclass
class StageProfile:
    """Accumulates seconds and UNet image-evaluations (batch rows through the UNet) per stage."""

    device: torch.device | None = None
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    unet_evals: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    current: str = "other"
    _child_seconds: list[float] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str):
        """Time a stage; a nested stage's time is its own, not also counted in the enclosing one."""
        previous, self.current = self.current, name
        _sync(self.device)
        start = time.perf_counter()
        self._child_seconds.append(0.0)
        try:
            yield
        finally:
            _sync(self.device)
            elapsed = time.perf_counter() - start
            self.seconds[name] += elapsed - self._child_seconds.pop()
            if self._child_seconds:
                self._child_seconds[-1] += elapsed
            self.current = previous

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())

    def count_unet(self, batch: int) -> None:
        self.unet_evals[self.current] += batch

    def merge(self, other: "StageProfile") -> None:
        for k, v in other.seconds.items():
            self.seconds[k] += v
        for k, v in other.unet_evals.items():
            self.unet_evals[k] += v

    def as_dict(self) -> dict:
        return {"seconds": dict(self.seconds), "unet_evals": dict(self.unet_evals)}
