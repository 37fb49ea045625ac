"""The library hook the studio uses (interpolate(on_event=...)), the Prefect backend (stubbed), `--preset`."""
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from dreammover.config import InterpolationConfig
from dreammover.events import Cancelled
from dreammover.sample import sample_pair

CFG = InterpolationConfig(size=64, num_frames=3, lora_steps=2, num_inference_steps=10, inversion_steps=4,
                          feature_step=2, frames_per_batch=2)


def test_events_cover_every_stage_and_change_nothing(tiny_dm):
    a, b = sample_pair(64)
    events = []
    hooked = tiny_dm.interpolate(a, b, CFG, on_event=events.append)
    plain = tiny_dm.interpolate(a, b, CFG)
    assert all(np.array_equal(x, y) for x, y in zip(hooked.frames, plain.frames))
    assert hooked.unet_evals == plain.unet_evals
    stages = [e.stage for e in events]
    assert stages == sorted(stages, key=["encode", "lora", "inversion", "flow", "denoise", "decode"].index)
    den = [e for e in events if e.stage == "denoise"]
    # 2 chunks (2 + 1 deltas) x 4 steps, counted over all chunks; each carries its chunk's clean latents
    assert [e.step for e in den] == list(range(1, 9)) and {e.total for e in den} == {8}
    assert [list(e.deltas) for e in den[::4]] == [[0.25, 0.5], [0.75]]
    assert den[0].latents.shape[0] == 4 and den[-1].latents.shape[0] == 3
    # the last step's clean prediction is (nearly) the final latent: its decode is the clip's delta-0.5 frame
    mid = tiny_dm.decode(den[3].latents[3:4])[0].astype(float)
    err = [np.abs(mid - f.astype(float)).mean() for f in hooked.frames]
    assert int(np.argmin(err)) == 2 and err[2] < 0.2 * min(err[:2] + err[3:])
    assert [e.step for e in events if e.stage == "lora"] == [1, 2]


def test_cancel_from_the_callback_stops_at_the_next_step(tiny_dm):
    a, b = sample_pair(64)
    calls = []

    def stop_in_inversion(ev):
        calls.append(ev.stage)
        if ev.stage == "inversion":
            raise Cancelled("user")

    with pytest.raises(Cancelled):
        tiny_dm.interpolate(a, b, CFG, on_event=stop_in_inversion)
    assert calls[-1] == "inversion" and "denoise" not in calls
    # the model is usable afterwards (the LoRA fit left eval mode behind)
    assert not tiny_dm.components.unet.training


def _fake_prefect(tmp_path, names):
    """run_deployment + a client whose flow run goes through `names`; on Completed it leaves what the real
    flow leaves: the frames artifact in the cache and the summary naming it next to the clip."""
    from dreammover_tasks.artifacts import put_images

    submitted, states, made = {}, iter(names), [np.full((32, 32, 3), 9 * i + 1, np.uint8) for i in range(4)]

    def run_deployment(name, parameters, timeout):
        submitted.update(name=name, timeout=timeout, **parameters)
        return SimpleNamespace(id="run-1")

    class Client:
        cancelled = []

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read_flow_run(self, run_id):
            name = next(states)
            if name == "Completed":
                uri = put_images(str(tmp_path / "cache"), "frames/abc.safetensors", made)
                Path(submitted["output"]).with_suffix(".json").write_text(json.dumps({"cache": {"frames": uri}}))
            st = SimpleNamespace(name=name, message=None, is_final=lambda: name == "Completed",
                                 is_completed=lambda: name == "Completed", is_running=lambda: name == "Running")
            return SimpleNamespace(name="r", state=st)

        def set_flow_run_state(self, run_id, state, force=False):
            self.cancelled.append(run_id)

    return run_deployment, Client, submitted, made


def test_prefect_backend_submits_polls_and_cancels(tmp_path):
    from dreammover_studio.prefect_backend import PrefectBackend

    from dreammover.events import Event

    run_deployment, Client, submitted, made = _fake_prefect(tmp_path, ["Scheduled", "Running", "Completed"])
    backend = PrefectBackend("interpolate-pair/gpu", poll_seconds=0, run_deployment=run_deployment,
                             client_factory=Client)
    seen = []
    frames, stats = backend.run(tmp_path, CFG, seen.append)
    assert submitted["name"] == "interpolate-pair/gpu" and submitted["timeout"] == 0
    assert submitted["config"]["num_frames"] == 3 and submitted["image0"].endswith("in0.png")
    # the frames artifact, bit for bit (decoding the H.264 clip would not give these back)
    assert len(frames) == 4 and all(np.array_equal(a, b) for a, b in zip(frames, made))
    assert stats["flow_run"] == "run-1" and isinstance(seen[0], Event)

    run_deployment, Client, _, _ = _fake_prefect(tmp_path, ["Running"] * 3)

    def cancel(ev):
        raise Cancelled("user")

    with pytest.raises(Cancelled):
        PrefectBackend("d/x", poll_seconds=0, run_deployment=run_deployment, client_factory=Client).run(
            tmp_path, CFG, cancel)
    assert Client.cancelled == ["run-1"]


def test_prefect_backend_deadline_fails_the_job_and_cancels_the_run(tmp_path):
    from dreammover_studio.prefect_backend import DeadlineExceeded, PrefectBackend

    run_deployment, Client, _, _ = _fake_prefect(tmp_path, ["Running"] * 1000)
    backend = PrefectBackend("d/x", poll_seconds=0.01, run_deployment=run_deployment, client_factory=Client,
                             deadline_seconds=0.2)
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="did not finish within the deadline"):
        backend.run(tmp_path, CFG, lambda ev: None)
    assert time.monotonic() - start < 5 and Client.cancelled == ["run-1"]


def test_cli_preset(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from dreammover.cli import app
    from dreammover.video import read_video

    from dreammover.sample import write_sample_pair

    a, b = write_sample_pair(tmp_path, 64)
    bad = CliRunner().invoke(app, ["interpolate", str(a), str(b), "--preset", "tiktok", "--model", "nope"])
    assert bad.exit_code == 2 and "unknown preset 'tiktok'" in bad.output
    out = tmp_path / "loop.gif"
    res = CliRunner().invoke(app, ["interpolate", str(a), str(b), "-o", str(out), "--model", str(tiny_model_dir),
                                   "--frames", "2", "--size", "64", "--preset", "gif-loop", "-q",
                                   "--device", "cpu", "--dtype", "fp32", "--config", str(_cfg(tmp_path))])
    assert res.exit_code == 0, res.output
    assert len(read_video(out)) == 2 * (2 + 2) - 1  # boomerang of N+2 frames


def _cfg(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"lora_steps": 1, "num_inference_steps": 10, "inversion_steps": 4, "feature_step": 2}')
    return p
