"""A chained burst's clip as a task: the segments' decoded frames joined into one frames artifact (issue #18)."""
from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from dreammover.chain import join_segments, segment_motion

from .artifacts import digest, get_images, put_images
from .results import FramesArtifact, Prepared, TaskRun
from .retry import retry_options
from .storage import open_storage


@task(name="measure-motion", cache_policy=NO_CACHE, **retry_options())
def measure_motion(prepared: list[Prepared]) -> list[float]:
    """Each segment's motion (mean DIS flow on thumbnails, dreammover.chain.segment_motion) from its prepared pair."""
    return [segment_motion(*get_images(p.uri)) for p in prepared]


@task(name="join-chain", cache_policy=NO_CACHE, **retry_options())
def join_chain(segments: list[FramesArtifact], cache: str) -> FramesArtifact:
    """One frames artifact for the whole chain: segment i+1's first frame (segment i's last keyframe) dropped.

    Content-keyed by the segments' frames keys, first writer wins: a re-run reads nothing when it is there.
    """
    key = digest("chain-frames", [s.key for s in segments])
    name, store = f"frames/{key}.safetensors", open_storage(cache)
    out = FramesArtifact(key=key, uri=store.uri(name), count=sum(s.count for s in segments) - len(segments) + 1)
    if store.exists(name):
        return out
    clip = join_segments([get_images(s.uri) for s in segments])
    put_images(cache, name, clip, overwrite=False)
    return out.model_copy(update={"run": TaskRun(computed=True)})
