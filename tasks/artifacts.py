"""Cache keys and safetensors artifacts: how tensors travel between tasks (by URI, never pickled).

A key is a hash of exactly the inputs that determine an artifact (DESIGN §4) and the artifact's
name in the cache storage: the pipeline's one cache (docs/pipeline.md). A re-run, another chunk
of the same pair, or another machine sharing the cache finds it there.
"""
from __future__ import annotations

import hashlib
import json
import struct
from typing import Iterable

import numpy as np
import torch

import dreammover
from dreammover.config import INVERSION_FIELDS, LORA_FIELDS, InterpolationConfig

from .storage import open_storage, read_uri, retry_transient

# Knobs that change memory and speed, never the clip (the method guarantees batching-invariance).
BATCHING_FIELDS = ("frames_per_batch", "decode_batch", "flow_chunk_rows")
# Fields that never change a rendered frame: the batching knobs, and num_frames, whose effect
# (the deltas) is keyed explicitly per chunk. keep_inputs only matters to decode. Listing what to
# *exclude* means a field added to the config later invalidates rendered frames by default.
NON_RENDER_FIELDS = (*BATCHING_FIELDS, "num_frames", "keep_inputs")


def digest(*parts) -> str:
    """Stable short hash of JSON-able parts (sorted keys: dict order never changes a key)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def images_hash(images: Iterable[np.ndarray]) -> str:
    """Content hash of prepared images (pixels and shapes), the pair's identity in every cache key."""
    h = hashlib.sha256()
    for im in images:
        h.update(str(im.shape).encode())
        h.update(np.ascontiguousarray(im).tobytes())
    return h.hexdigest()[:24]


def lora_key(pair_hash: str, identity: str, config: InterpolationConfig, cache: str) -> str:
    # The cache root is part of every key: a cached result must point into the storage in use.
    return digest("lora", dreammover.__version__, pair_hash, identity, config.subset(LORA_FIELDS), cache)


def inversion_key(pair_hash: str, identity: str, config: InterpolationConfig, cache: str) -> str:
    return digest("inversion", dreammover.__version__, pair_hash, identity, config.subset(INVERSION_FIELDS), cache)


def render_fields(config: InterpolationConfig) -> dict:
    return {k: v for k, v in config.model_dump().items() if k not in NON_RENDER_FIELDS}


def chunk_key(state_key: str, deltas: list[float], config: InterpolationConfig) -> str:
    return digest("chunk", state_key, [round(d, 12) for d in deltas], render_fields(config))


def frames_key(chunk_keys: list[str], config: InterpolationConfig) -> str:
    return digest("frames", chunk_keys, config.keep_inputs)


# -- safetensors artifacts ----------------------------------------------------------------------------


def put_tensors(cache: str, key: str, tensors: dict[str, torch.Tensor], metadata: dict | None = None,
                overwrite: bool = True) -> str:
    """Write tensors as one safetensors object at <cache>/<key>; return its URI.

    overwrite=False: the first writer of the key wins (storage `create`, atomic) and a later or
    racing writer leaves the winner's object in place; the URI returned then names the winner's
    tensors, which the caller must read back instead of its own (two producers of one content key
    agree on one object; with overwrite, the last writer won). Use it for content-keyed artifacts,
    and overwrite=True where the caller asked to recompute a suspect object.
    """
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                metadata={k: str(v) for k, v in (metadata or {}).items()})
    publish(cache, key, data, overwrite)
    return open_storage(cache).uri(key)


def publish(cache: str, key: str, data: bytes, overwrite: bool = True) -> bool:
    """Store one artifact at <cache>/<key> (overwrite: as put_tensors); False when another producer's
    object was there first and stands (overwrite=False), True when ours is what the key holds."""
    store = open_storage(cache)
    # Retried here: a transient error at the very end would otherwise retry the task, recomputing it all.
    if overwrite:
        retry_transient(store.write_bytes, key, data)
        return True
    return bool(retry_transient(store.create, key, data))


def get_tensors(uri: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a safetensors object by URI: (tensors, string metadata)."""
    from safetensors.torch import load

    data = read_uri(uri)
    return load(data), safetensors_metadata(data)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The __metadata__ of a safetensors blob (its header is 8-byte length + JSON)."""
    (n,) = struct.unpack("<Q", data[:8])
    return dict(json.loads(data[8:8 + n]).get("__metadata__", {}))


def put_images(cache: str, key: str, images: list[np.ndarray], metadata: dict | None = None,
               overwrite: bool = True) -> str:
    """uint8 RGB frames [H,W,3] as one [B,H,W,3] tensor (overwrite: as put_tensors)."""
    return put_tensors(cache, key, {"images": torch.from_numpy(np.stack(images))}, metadata, overwrite)


def get_images(uri: str) -> list[np.ndarray]:
    tensors, _ = get_tensors(uri)
    return list(tensors["images"].numpy())


def clip_fingerprint(inputs: dict, model: dict, config: InterpolationConfig, fps: float, fmt: str,
                     preset: dict | None = None) -> str:
    """Everything that changes a published clip: photos (URI + content version), model, settings, fps, format,
    and the clip preset when there is one (without one the fingerprint is as before presets existed).

    Recorded in the per-pair summary; an archive re-run skips a pair only when it matches.
    """
    settings = {k: v for k, v in config.model_dump().items() if k not in BATCHING_FIELDS}
    model = {k: v for k, v in model.items() if k != "device"}  # where it ran does not define the clip
    parts = [inputs, model, settings, float(fps), fmt] + ([{"preset": preset}] if preset else [])
    return digest("clip", dreammover.__version__, *parts)
