"""Interpolation backends behind one interface: `load_backend(name, model).interpolate(I0, I1, config)`.

| name | method | config type | models |
|---|---|---|---|
| `dreammover` | DreamMover (Shen et al. 2024), `dreammover.pipeline` | `InterpolationConfig` | SD1.5, `tiny` |
| `svd` | Generative Inbetweening (Wang et al. 2024), `svd_keyframe` | `SVDKeyframeConfig` | SVD-XT, `tiny-svd` |

Every backend's `interpolate(image0, image1, config=None, progress=False)` returns an `InterpolationResult`
(N+2 uint8 frames, per-stage seconds, UNet evaluations). See docs/backends.md.
"""
from __future__ import annotations

BACKENDS = ("dreammover", "svd")


def config_type(name: str):
    """The pydantic config class a backend's `interpolate` takes."""
    if name == "dreammover":
        from ..config import InterpolationConfig
        return InterpolationConfig
    if name == "svd":
        from .svd_config import SVDKeyframeConfig
        return SVDKeyframeConfig
    raise ValueError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")


def default_model(name: str) -> str:
    """The model a backend loads when none is named."""
    if name == "svd":
        from .svd_models import DEFAULT_SVD_MODEL
        return DEFAULT_SVD_MODEL
    from ..models import DEFAULT_MODEL
    config_type(name)
    return DEFAULT_MODEL


def load_backend_config(name: str, path=None, **overrides):
    """A backend's config from one place: file (JSON/YAML) < environment < explicit overrides.

    Environment variables: DREAMMOVER_CFG_<FIELD> for `dreammover`, DREAMMOVER_SVD_CFG_<FIELD> for `svd`.
    """
    from ..config_io import load_config_file

    if name == "dreammover":
        return load_config_file(path, **overrides)
    import json
    import os
    from pathlib import Path

    cls, data = config_type(name), {}
    if path is not None:
        text = Path(path).read_text()
        if Path(path).suffix in {".yaml", ".yml"}:
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of {cls.__name__} fields")
    for field in cls.model_fields:
        value = os.environ.get(f"DREAMMOVER_{name.upper()}_CFG_{field.upper()}")
        if value is not None:
            data[field] = value
    data.update({k: v for k, v in overrides.items() if v is not None})
    return cls.model_validate(data)


def load_backend(name: str, model: str | None = None, vae: str | None = None, device=None, dtype=None):
    """Load a backend by name; raises ModelLoadError (one clear line) when its weights cannot be found."""
    config_type(name)  # unknown names fail before any heavy import
    model = model or default_model(name)
    if name == "svd":
        from .svd_keyframe import SVDKeyframeInterpolator
        return SVDKeyframeInterpolator.from_pretrained(model, vae=vae, device=device, dtype=dtype)
    from ..pipeline import DreamMover
    return DreamMover.from_pretrained(model, vae=vae, device=device, dtype=dtype)


__all__ = ["BACKENDS", "config_type", "default_model", "load_backend", "load_backend_config"]
