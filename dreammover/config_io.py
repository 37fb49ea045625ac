"""InterpolationConfig from one place: a JSON/YAML file, then DREAMMOVER_* env vars, then explicit overrides."""
from __future__ import annotations

import json
import os
from pathlib import Path

from .config import InterpolationConfig

ENV_PREFIX = "DREAMMOVER_CFG_"


def load_config_file(path: str | Path | None = None, **overrides) -> InterpolationConfig:
    """Merge file < environment (DREAMMOVER_CFG_<FIELD>) < overrides and validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        text = path.read_text()
        if path.suffix in {".yaml", ".yml"}:
            import yaml
            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of InterpolationConfig fields")
    for name in InterpolationConfig.model_fields:
        value = os.environ.get(ENV_PREFIX + name.upper())
        if value is not None:
            data[name] = value
    data.update({k: v for k, v in overrides.items() if v is not None})
    return InterpolationConfig.model_validate(data)
