"""Optional: run studio jobs on the production Prefect pool through a deployment, and follow them by polling.

Thin on purpose: the deployment (e.g. 'interpolate-pair/gpu') owns the work; the studio submits with
`run_deployment(..., timeout=0)`, polls the flow run's state, maps it to a stage, and cancels through the API.
The job folder must be visible to the workers (a shared volume), or `uri` maps it to where they can read it.
The frames come from the pair's frames artifact (named in the summary the flow writes next to the clip), not
from decoding its H.264 clip: presets are then encoded from the exact frames, as for in-process jobs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from dreammover.config import InterpolationConfig
from dreammover.events import Cancelled, Event


class DeadlineExceeded(RuntimeError):
    """The flow run did not finish in time; it has been cancelled."""


class PrefectBackend:
    """Submit to a deployment and poll until done or `deadline_seconds`; `report` raises Cancelled on cancel."""

    def __init__(self, deployment: str, poll_seconds: float = 2.0, uri: Callable[[Path], str] = str,
                 run_deployment=None, client_factory=None, deadline_seconds: float = 6 * 3600):
        self.deployment, self.poll, self.uri, self.deadline = deployment, poll_seconds, uri, deadline_seconds
        self._run_deployment, self._client_factory = run_deployment, client_factory

    def _client(self):
        if self._client_factory is not None:
            return self._client_factory()
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def run(self, folder: Path, config: InterpolationConfig, report) -> tuple[list, dict]:
        from dreammover_flows.pair import summary_uri
        from dreammover_tasks.artifacts import get_images
        from dreammover_tasks.storage import read_uri

        run_deployment = self._run_deployment
        if run_deployment is None:
            from prefect.deployments import run_deployment
        out = self.uri(folder / "prefect.mp4")
        params = {"image0": self.uri(folder / "in0.png"), "image1": self.uri(folder / "in1.png"),
                  "output": out, "config": config.model_dump()}
        flow_run = run_deployment(name=self.deployment, parameters=params, timeout=0)
        end = time.monotonic() + self.deadline
        with self._client() as client:
            while True:
                run = client.read_flow_run(flow_run.id)
                state = run.state
                try:
                    report(Event("denoise" if state and state.is_running() else "lora", 0, 1))
                    if state is not None and state.is_final():
                        if not state.is_completed():
                            raise RuntimeError(f"flow run {run.name} ended {state.name}: "
                                               f"{state.message or ''}".strip())
                        break
                    if time.monotonic() > end:
                        raise DeadlineExceeded(f"flow run {run.name} did not finish within the deadline of "
                                               f"{self.deadline / 3600:g} h (--deadline-hours); it was cancelled")
                except (Cancelled, DeadlineExceeded):
                    from prefect.states import Cancelling

                    client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
                    raise
                time.sleep(self.poll)
        summary = json.loads(read_uri(summary_uri(out)))  # written last by the flow: the clip is complete
        frames_uri = (summary.get("cache") or {}).get("frames")
        if not frames_uri:
            raise RuntimeError(f"flow run {run.name}: its summary names no frames artifact")
        return get_images(frames_uri), {"seconds": {}, "unet_evals": {}, "flow_run": str(flow_run.id)}
