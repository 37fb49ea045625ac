"""Progress events from `DreamMover.interpolate(on_event=...)`: one stage/step report, and how a caller cancels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch


class Cancelled(Exception):
    """Raise from an `on_event` callback to stop the run at the next step (nothing is returned)."""


@dataclass(frozen=True)
class Event:
    """`step` of `total` done in `stage` (encode, lora, inversion, flow, denoise, decode), in that order.

    For `denoise`, `latents` is the predicted clean latent z_{t->0} of the current chunk ([2+k,C,h,w]:
    both endpoints, then the in-betweens at `deltas`); decoding one of them gives a cheap preview.
    """

    stage: str
    step: int
    total: int
    latents: torch.Tensor | None = None
    deltas: Sequence[float] = ()


EventFn = Callable[[Event], None]
