"""Chained bursts (issue #18): the frame split's properties, and K keyframes rendered as one clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dreammover.chain import join_segments, prepare_keyframes, render_chain, segment_motion, split_frames
from dreammover.config import InterpolationConfig

FAST = dict(size=64, lora_steps=2, lora_rank=4, num_inference_steps=10, inversion_steps=6, feature_step=3,
            frames_per_batch=4)


def scene(x: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """A textured background with a bright square at column x: a subject that moves along a burst."""
    rng = np.random.default_rng(seed)
    im = (rng.random((size, size, 3)) * 80).astype(np.uint8)
    im[30:60, x:x + 24] = (230, 200, 40)
    return im


@pytest.mark.parametrize("total,motions,minimum", [
    (32, [1.0, 2.0, 3.0], 2), (7, [0.1, 0.1], 2), (10, [0.0, 0.0, 0.0], 1), (9, [5.0, 0.0], 2),
    (100, [0.3, 1.7, 0.01, 4.2, 0.0], 3), (4, [1.0, 2.0], 2)])
def test_split_frames_sums_respects_minimum_and_is_monotone(total, motions, minimum):
    counts = split_frames(total, motions, minimum)
    assert sum(counts) == total and len(counts) == len(motions)
    assert min(counts) >= minimum
    for i in range(len(motions)):
        for j in range(len(motions)):
            if motions[i] > motions[j]:
                assert counts[i] >= counts[j], (motions, counts)


def test_split_frames_is_proportional_to_motion():
    # Twice the motion, twice the frames above the minimum: 2 + 2*k vs 2 + k.
    assert split_frames(4 + 30, [2.0, 1.0]) == [22, 12]
    assert split_frames(12, [1.0, 1.0, 1.0], 0) == [4, 4, 4]
    assert split_frames(6, [0.0, 0.0]) == [3, 3]  # no motion measured: even


def test_split_frames_refuses_a_budget_below_the_minimum():
    with pytest.raises(ValueError, match="at least 6"):
        split_frames(5, [1, 1, 1], 2)
    with pytest.raises(ValueError):
        split_frames(5, [])


def test_chain_configs_give_each_segment_its_share_and_relax_the_minimum_for_long_bursts():
    from dreammover.chain import chain_configs

    config = InterpolationConfig(num_frames=10)
    # 2 each, the 6 left split 1.5 : 4.5, the half frame to the segment with more motion.
    assert [c.num_frames for c in chain_configs(config, [1.0, 3.0])] == [3, 7]
    assert all(c.lora_steps == config.lora_steps for c in chain_configs(config, [1.0, 3.0]))
    long = chain_configs(config, [1.0] * 7 + [4.0])  # 8 segments: 2 each would need 16
    assert sum(c.num_frames for c in long) == 10 and min(c.num_frames for c in long) == 1
    assert long[-1].num_frames == max(c.num_frames for c in long)
    with pytest.raises(ValueError, match="at least 11"):
        chain_configs(config, [1.0] * 11)


def test_segment_motion_grows_with_displacement():
    still, near, far = scene(10), scene(16), scene(50)
    assert segment_motion(still, still) < 1e-3
    assert segment_motion(still, near) < segment_motion(still, far)


def test_join_segments_drops_the_shared_keyframe():
    k = [np.full((4, 4, 3), v, np.uint8) for v in (0, 100, 200)]
    mid = [np.full((4, 4, 3), v, np.uint8) for v in (50, 150)]
    clip = join_segments([[k[0], mid[0], k[1]], [k[1], mid[1], k[2]]])
    assert [int(f[0, 0, 0]) for f in clip] == [0, 50, 100, 150, 200]


def test_chained_burst_renders_one_clip_with_each_keyframe_once(tiny_dm):
    photos = [scene(4), scene(30), scene(60)]
    config = InterpolationConfig(**FAST, num_frames=6, keep_inputs=True)
    before = {k: v.clone() for k, v in tiny_dm.components.unet.state_dict().items()}
    fits = []
    real_fit = tiny_dm.fit_pair
    tiny_dm.fit_pair = lambda images, cfg, *a, **kw: fits.append(cfg.num_frames) or real_fit(images, cfg, *a, **kw)
    try:
        clip = render_chain(tiny_dm, photos, config, motions=[3.0, 1.0])
    finally:
        del tiny_dm.fit_pair
    keys = prepare_keyframes(photos, config.size)
    # Budget 6 split by motion 3:1 with 2 each: 4 + 2; the clip has the 6 in-betweens and the 3 keyframes.
    assert fits == [4, 2]
    assert len(clip) == 6 + 3
    for key, where in zip(keys, (0, 5, 8)):
        hits = [i for i, f in enumerate(clip) if np.array_equal(f, key)]
        assert hits == [where]
    # Each segment fitted its own LoRA, and none stays merged in the model afterwards.
    after = tiny_dm.components.unet.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_render_chain_rejects_a_wrong_number_of_motions(tiny_dm):
    with pytest.raises(ValueError, match="need 2 motions"):
        render_chain(tiny_dm, [scene(4), scene(30), scene(60)], InterpolationConfig(**FAST, num_frames=4),
                     motions=[1.0])
