"""The config's defaults are the paper's; invalid combinations fail loudly; one place for file/env/flags."""
import json

import pytest
from pydantic import ValidationError

from dreammover import InterpolationConfig
from dreammover.config_io import load_config_file


def test_defaults_are_the_papers():
    c = InterpolationConfig()
    assert (c.num_inference_steps, c.inversion_steps, c.feature_step, c.feature_block) == (50, 30, 14, 1)
    assert (c.num_frames, c.lora_rank, c.lora_lr, c.lora_steps) == (32, 16, 5e-4, 80)
    assert (c.guidance_scale, c.splat_alpha, c.wta_mode, c.reference_blocks) == (1.0, 10.0, "select", 6)
    assert (c.flow, c.fusion, c.reference_attention, c.lora) == ("diffusion", "two_level", True, True)


def test_deltas_are_i_over_n_plus_one():
    assert InterpolationConfig(num_frames=3).deltas == [0.25, 0.5, 0.75]


def test_invalid_configs_rejected():
    with pytest.raises(ValidationError):
        InterpolationConfig(guidance_scale=7.5)
    with pytest.raises(ValidationError):
        InterpolationConfig(inversion_steps=60)
    with pytest.raises(ValidationError):
        InterpolationConfig(flow="raft-ish")
    with pytest.raises(ValidationError):
        InterpolationConfig(unknown_field=1)


def test_file_then_env_then_flags(tmp_path, monkeypatch):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"num_frames": 5, "lora_rank": 8, "prompt": "a dog"}))
    monkeypatch.setenv("DREAMMOVER_CFG_LORA_RANK", "4")
    c = load_config_file(f, prompt="a cat")
    assert (c.num_frames, c.lora_rank, c.prompt) == (5, 4, "a cat")
