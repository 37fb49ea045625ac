"""Everything the per-frame stages need from one pair, as plain tensors that round-trip through safetensors."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

_TENSORS = ("z_T", "z_T_to_0", "flow01", "flow10", "text_emb")


@dataclass
class PairState:
    """Inverted latents z_T and z_{T->0} of both inputs ([2,C,h,w]), flows ([2,h,w]) and the prompt embedding."""

    z_T: torch.Tensor
    z_T_to_0: torch.Tensor
    flow01: torch.Tensor
    flow10: torch.Tensor
    text_emb: torch.Tensor

    def to(self, device=None, dtype=None) -> "PairState":
        def move(name: str, t: torch.Tensor) -> torch.Tensor:
            # Flows stay float32: they are pixel coordinates, not activations.
            return t.to(device=device, dtype=None if name.startswith("flow") else dtype)
        return PairState(**{n: move(n, getattr(self, n)) for n in _TENSORS})

    def tensors(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, n).detach().cpu().contiguous() for n in _TENSORS}

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        from safetensors.torch import save_file

        save_file(self.tensors(), str(path), metadata=metadata or {})
        return Path(path)

    def to_bytes(self, metadata: dict[str, str] | None = None) -> bytes:
        from safetensors.torch import save

        return save(self.tensors(), metadata=metadata or {})

    @classmethod
    def load(cls, path: str | Path) -> "PairState":
        from safetensors.torch import load_file

        return cls(**{n: t for n, t in load_file(str(path)).items() if n in _TENSORS})

    @classmethod
    def from_bytes(cls, data: bytes) -> "PairState":
        from safetensors.torch import load

        return cls(**{n: t for n, t in load(data).items() if n in _TENSORS})


@dataclass
class FittedPair:
    """Steps 0-5 of one pair: its prepared photos, its LoRA weights (None: the plain UNet) and PairState."""

    images: list[Any]
    lora: dict[str, torch.Tensor] | None
    state: PairState
    lora_losses: list[float] = field(default_factory=list)
