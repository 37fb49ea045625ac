"""Optional: run studio jobs on the production Prefect pool through a deployment, and follow them by polling.

Thin on purpose: the deployment (e.g. 'interpolate-pair/gpu') owns the work; the studio submits with
`run_deployment(..., timeout=0)`, polls the flow run's state, maps it to a stage, and cancels through the API.
The job folder must be visible to the workers (a shared volume), or `uri` maps it to where they can read it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from dreammover.config import InterpolationConfig
from dreammover.events import Cancelled, Event


class PrefectBackend:
    """Submit to a deployment and poll; `report` still raises Cancelled when the user cancels."""

    def __init__(self, deployment: str, poll_seconds: float = 2.0, uri: Callable[[Path], str] = str,
                 run_deployment=None, client_factory=None):
        self.deployment, self.poll, self.uri = deployment, poll_seconds, uri
        self._run_deployment, self._client_factory = run_deployment, client_factory

    def _client(self):
        if self._client_factory is not None:
            return self._client_factory()
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)

    def run(self, folder: Path, config: InterpolationConfig, report) -> tuple[list, dict]:
        from dreammover.video import read_video

        run_deployment = self._run_deployment
        if run_deployment is None:
            from prefect.deployments import run_deployment
        out = folder / "prefect.mp4"
        params = {"image0": self.uri(folder / "in0.png"), "image1": self.uri(folder / "in1.png"),
                  "output": self.uri(out), "config": config.model_dump()}
        flow_run = run_deployment(name=self.deployment, parameters=params, timeout=0)
        with self._client() as client:
            while True:
                run = client.read_flow_run(flow_run.id)
                state = run.state
                try:
                    report(Event("denoise" if state and state.is_running() else "lora", 0, 1))
                except Cancelled:
                    from prefect.states import Cancelling

                    client.set_flow_run_state(flow_run.id, Cancelling(), force=True)
                    raise
                if state is not None and state.is_final():
                    if not state.is_completed():
                        raise RuntimeError(f"flow run {run.name} ended {state.name}: {state.message or ''}".strip())
                    break
                time.sleep(self.poll)
        return read_video(out), {"seconds": {}, "unet_evals": {}, "flow_run": str(flow_run.id)}
