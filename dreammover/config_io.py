"""InterpolationConfig from one place: a JSON/YAML file, then DREAMMOVER_CFG_* env vars, then explicit overrides.

Every command follows this order, so an option left out on the command line must reach this module as None
(typer options default to None) and never as a default value that would hide the file and the environment.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from pydantic import create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import InterpolationConfig

ENV_PREFIX = "DREAMMOVER_CFG_"


class _EnvBase(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, extra="ignore")


def _env_settings() -> type[BaseSettings]:
    """A settings class with one optional raw field per InterpolationConfig field, read from DREAMMOVER_CFG_*.

    Values stay strings here; InterpolationConfig validates them once, so file, env and flags share one set of
    rules and messages.
    """
    fields = {name: (Optional[str], None) for name in InterpolationConfig.model_fields}
    return create_model("InterpolationEnv", __base__=_EnvBase, **fields)


def env_values() -> dict:
    """The DREAMMOVER_CFG_<FIELD> variables that are set; an unknown <FIELD> is an error, not silently ignored."""
    known = {ENV_PREFIX + name.upper() for name in InterpolationConfig.model_fields}
    unknown = sorted(k for k in os.environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)
    if unknown:
        raise ValueError(f"unknown setting {', '.join(unknown)}: DREAMMOVER_CFG_<FIELD> takes the fields of "
                         f"InterpolationConfig ({', '.join(InterpolationConfig.model_fields)})")
    return _env_settings()().model_dump(exclude_none=True)


def read_config_file(path: str | Path) -> dict:
    """A JSON or YAML mapping of InterpolationConfig fields."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of InterpolationConfig fields")
    return data


def load_config_file(path: str | Path | None = None, defaults: dict | None = None,
                     **overrides) -> InterpolationConfig:
    """Merge defaults < file < environment (DREAMMOVER_CFG_<FIELD>) < overrides (None = not given) and validate.

    defaults: a command's own starting values below the file (e.g. quick settings for the tiny model).
    """
    data = dict(defaults or {})
    if path is not None:
        data.update(read_config_file(path))
    data.update(env_values())
    data.update({k: v for k, v in overrides.items() if v is not None})
    return InterpolationConfig.model_validate(data)


def given_fields(path: str | Path | None = None, **overrides) -> set[str]:
    """Fields set by the file, the environment or a non-None override (what a command's defaults must not touch)."""
    out = set(read_config_file(path)) if path is not None else set()
    return out | set(env_values()) | {k for k, v in overrides.items() if v is not None}
