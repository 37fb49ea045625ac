"""One render path, frames unchanged: each caller renders what it rendered before they shared it.

tests/data/render_parity.npz was recorded by `python tests/render_parity.py` at commit 844b0e0, when the
steps were still sequenced four times (DreamMover.interpolate, the studio's backend, the pool's tasks and
the Fig. 5c curves); every frame must match to the last 8-bit level.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import render_parity as case

RECORD = np.load(Path(__file__).parent / "data" / "render_parity.npz")


def test_the_record_is_a_real_clip():
    # Guards the record itself: five distinct, non-flat frames, and a curve per fusion.
    frames = RECORD["library"]
    assert frames.shape == (5, 64, 64, 3) and frames.std() > 10
    assert all(not np.array_equal(frames[i], frames[i + 1]) for i in range(4))
    assert RECORD["curves"].shape == (12, 2)


def test_interpolate_renders_the_recorded_frames(tiny_dm, tmp_path):
    np.testing.assert_array_equal(case.library_frames(tiny_dm, tmp_path), RECORD["library"])


def test_the_studio_renders_the_recorded_frames(tiny_dm, tmp_path):
    np.testing.assert_array_equal(case.studio_frames(tiny_dm, tmp_path), RECORD["studio"])


def test_the_curves_are_the_recorded_ones(tiny_dm, tmp_path):
    np.testing.assert_array_equal(case.curve_values(tiny_dm, tmp_path), RECORD["curves"])


def test_the_pool_tasks_render_the_recorded_frames(prefect_env, tiny_model_dir, tmp_path):
    np.testing.assert_array_equal(case.pipeline_frames(tiny_model_dir, tmp_path), RECORD["pipeline"])
