"""LPIPS (Zhang et al. 2018) and FID (Heusel et al. 2017) on locally present weights; nothing is downloaded.

Weights come from a user-given file, else from the usual caches when they exist (torch hub's checkpoints
folder, the `lpips` package's linear layers). When none is found the loader raises `WeightsUnavailable`
whose message is the reason the bench prints for skipping the metric.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Sequence

import numpy as np
import torch

from .backbones import InceptionV3Pool, LPIPSTrunk, load_state

# LPIPS input normalisation (the constants of the published metric, applied to [-1, 1] images).
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
_TRUNK_FILES = MappingProxyType({"alex": "alexnet-owt-*.pth", "vgg": "vgg16-*.pth"})
_FID_FILES = ("pt_inception-2015-12-05-*.pth", "inception_v3_google-*.pth")


class WeightsUnavailable(RuntimeError):
    """No usable weights for a metric; the message says where they were looked for."""


def hub_checkpoint_dir() -> Path:
    """torch hub's checkpoint cache ($TORCH_HOME/hub/checkpoints), where torchvision / pytorch-fid keep weights."""
    home = Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"))
    return home / "hub" / "checkpoints"


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (weights_only: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _first(folder: Path, pattern: str) -> Path | None:
    hits = sorted(folder.glob(pattern)) if folder.is_dir() else []
    return hits[0] if hits else None


def _lpips_package_lin(arch: str) -> Path | None:
    spec = importlib.util.find_spec("lpips")  # locate only: importing lpips would pull torchvision
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{arch}.pth"
    return p if p.is_file() else None


def _kaiming(net: torch.nn.Module) -> torch.nn.Module:
    """He-initialise convs so a random deep net keeps activation scale (torch's default init shrinks it per layer)."""
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net


@dataclass
class LPIPS:
    """d(x, y) = sum_l mean_hw || w_l * (phi_l(x)/|phi_l(x)| - phi_l(y)/|phi_l(y)|) ||^2 (Zhang et al. 2018, Eq. 1)."""

    trunk: LPIPSTrunk
    lin: list[torch.Tensor]  # per-layer non-negative channel weights [C]
    name: str

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self.batch([a], [b])[0])

    @torch.no_grad()
    def batch(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> torch.Tensor:
        fa, fb = self.trunk(self._prep(xs)), self.trunk(self._prep(ys))
        total = torch.zeros(len(xs))
        for w, u, v in zip(self.lin, fa, fb):
            # Unit-normalise along channels so every layer contributes on the same footing.
            u = u / (u.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            v = v / (v.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total += ((u - v).pow(2) * w.view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
        return total

    def _prep(self, imgs: Sequence[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        shift = torch.tensor(_LPIPS_SHIFT).view(1, 3, 1, 1)
        return (x - shift) / torch.tensor(_LPIPS_SCALE).view(1, 3, 1, 1)


def load_lpips(weights: str | Path | None = None, lin: str | Path | None = None, arch: str = "alex",
               seed: int = 0) -> LPIPS:
    """LPIPS from a backbone checkpoint (`weights`, or torch hub's cache) and linear layers (`lin`, or lpips's).

    weights='random' builds a seeded random trunk with unit weights: plumbing tests only, values are not LPIPS.
    Without linear layers all channels weigh 1 (the paper's 'baseline' variant); the name says so.
    """
    if weights == "random":
        torch.manual_seed(seed)
        trunk = _kaiming(LPIPSTrunk(arch)).eval()
        return LPIPS(trunk, [torch.ones(c) for c in trunk.channels], f"lpips-{arch}-random (plumbing only)")
    path = Path(weights) if weights else _first(hub_checkpoint_dir(), _TRUNK_FILES[arch])
    if path is None:
        raise WeightsUnavailable(f"LPIPS needs {arch} backbone weights: pass --lpips-weights FILE "
                                 f"(e.g. torchvision's {_TRUNK_FILES[arch]}); none in {hub_checkpoint_dir()}")
    trunk = LPIPSTrunk(arch).eval()
    load_state(trunk, read_checkpoint(path))
    lin_path = Path(lin) if lin else _lpips_package_lin(arch)
    if lin_path is None:
        return LPIPS(trunk, [torch.ones(c) for c in trunk.channels], f"lpips-{arch}-baseline (no linear layers)")
    state = read_checkpoint(lin_path)
    ws = [state[k].flatten().float() for k in sorted(k for k in state if k.startswith("lin"))]
    if [len(w) for w in ws] != trunk.channels:
        raise WeightsUnavailable(f"{lin_path}: linear layers do not match the {arch} backbone")
    return LPIPS(trunk, ws, f"lpips-{arch}")


@dataclass
class FIDFeatures:
    """Inception-v3 pool3 features (2048-d) of uint8 RGB images."""

    net: InceptionV3Pool
    name: str
    batch_size: int = 8

    @torch.no_grad()
    def __call__(self, imgs: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for i in range(0, len(imgs), self.batch_size):
            x = torch.from_numpy(np.stack(imgs[i:i + self.batch_size])).permute(0, 3, 1, 2).float() / 255.0
            out.append(self.net(x).double().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))


def load_fid(weights: str | Path | None = None, seed: int = 0) -> FIDFeatures:
    """FID's Inception from `weights` (pytorch-fid's pt_inception or torchvision's file) or torch hub's cache.

    weights='random' gives a seeded random network: plumbing tests only, values are not FID.
    """
    if weights == "random":
        torch.manual_seed(seed)
        return FIDFeatures(_kaiming(InceptionV3Pool(fid=True)).eval(), "fid-inception-random (plumbing only)")
    path = Path(weights) if weights else next(
        (p for p in (_first(hub_checkpoint_dir(), pat) for pat in _FID_FILES) if p is not None), None)
    if path is None:
        raise WeightsUnavailable(f"FID needs Inception-v3 weights: pass --fid-weights FILE "
                                 f"(pytorch-fid's pt_inception-2015-12-05-*.pth); none in {hub_checkpoint_dir()}")
    state = read_checkpoint(path)
    # pytorch-fid's port of the TF graph has 1008 classes; torchvision's ImageNet model 1000 and other pools.
    fid_graph = "fc.weight" in state and state["fc.weight"].shape[0] == 1008
    net = InceptionV3Pool(fid=fid_graph).eval()
    load_state(net, state)
    return FIDFeatures(net, "fid-inception" if fid_graph else "fid-inception-torchvision (not TF-FID comparable)")


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """FID = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2), via eigendecompositions (stable, PSD-safe)."""
    if len(feats_a) < 2 or len(feats_b) < 2:
        raise ValueError("FID needs at least two images per set")
    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    s_a, s_b = np.cov(feats_a, rowvar=False), np.cov(feats_b, rowvar=False)
    vals, vecs = np.linalg.eigh(s_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    # tr((S_a S_b)^1/2) = tr((S_a^1/2 S_b S_a^1/2)^1/2): the inner matrix is symmetric PSD.
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ s_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)
