"""Save and load the backward model's W_v / W_o (Sec. 4.2): ours from Alg. 1, or the authors' released checkpoint."""
from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import temp_sibling
from .temporal_attention import WEIGHT_SUFFIXES, BackwardMotionWeights, temporal_attention_layers

FORMAT = "dreammover-backward-motion-wv-wo-v1"


class BackwardWeightsError(ValueError):
    """The backward weights file is missing, unreadable or does not fit the model; the message says which."""


def _safetensors_file(path: str | Path) -> Path:
    """A .safetensors file, or a diffusers UNet folder (or its parent, as the authors' checkpoint is laid out)."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "diffusion_pytorch_model.safetensors", p / "unet" / "diffusion_pytorch_model.safetensors"):
            if cand.is_file():
                return cand
        raise BackwardWeightsError(f"{p}: folder without diffusion_pytorch_model.safetensors (or unet/...)")
    if not p.is_file():
        raise BackwardWeightsError(f"{p}: backward weights not found")
    if p.suffix != ".safetensors":
        raise BackwardWeightsError(f"{p}: only .safetensors are loaded (pickled weights are unsafe)")
    return p


def read_wv_wo(path: str | Path, layers: list[str]) -> dict[str, torch.Tensor]:
    """The W_v / W_o tensors of `layers` from a file that may hold more (e.g. a whole fine-tuned UNet)."""
    from safetensors import safe_open

    file = _safetensors_file(path)
    wanted = {f"{layer}.{s}" for layer in layers for s in WEIGHT_SUFFIXES}
    try:
        with safe_open(str(file), framework="pt") as fh:
            found = {k: fh.get_tensor(k) for k in fh.keys() if k in wanted}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise BackwardWeightsError(f"{file}: not a readable safetensors file ({err})") from err
    missing = sorted(wanted - set(found))
    if missing:
        raise BackwardWeightsError(f"{file}: {len(missing)} of {len(wanted)} W_v/W_o tensors missing "
                                   f"(e.g. {missing[0]}): weights for a different architecture?")
    return found


def load_backward_weights(unet, path: str | Path, base: str | Path | None = None) -> BackwardMotionWeights:
    """f_θ' for `unet`: W_v / W_o read from `path`; with `base`, transferred as W + (W_ft - W_base).

    The transfer is how the authors use their weights, fine-tuned on SVD (14 frames), with SVD-XT: they add
    the fine-tuning delta to XT's own W_v / W_o instead of replacing them.
    """
    layers = temporal_attention_layers(unet)
    tuned = read_wv_wo(path, layers)
    own = BackwardMotionWeights.from_unet(unet).state()
    for k, t in tuned.items():
        if t.shape != own[k].shape:
            raise BackwardWeightsError(f"{path}: {k} has shape {tuple(t.shape)}, the model needs {tuple(own[k].shape)}")
    if base is not None:
        ref = read_wv_wo(base, layers)
        tuned = {k: own[k].float() + (t.float() - ref[k].float()) for k, t in tuned.items()}
    dtype, device = own[layers[0] + ".to_v.weight"].dtype, own[layers[0] + ".to_v.weight"].device
    return BackwardMotionWeights({k: t.to(device, dtype) for k, t in tuned.items()})


def save_backward_weights(weights: BackwardMotionWeights, path: str | Path, metadata: dict | None = None) -> Path:
    """Write only W_v / W_o (a few MB for SVD-XT) with what produced them in the header."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)  # unique: two fits saving to one path never write into one file
    meta = {"format": FORMAT, **{k: str(v) for k, v in (metadata or {}).items()}}
    try:
        save_file({k: t.float().cpu() for k, t in weights.state().items()}, str(tmp), metadata=meta)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
