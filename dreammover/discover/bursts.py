"""Bursts: photos of one camera whose consecutive capture times are at most `burst_gap_s` apart (streamed)."""
from __future__ import annotations

from typing import Iterable, Iterator

from pydantic import BaseModel

from .photos import Photo


class Burst(BaseModel):
    """One camera's run of photos in time order; `id` is stable: first capture time + camera."""

    id: str
    camera: str
    photos: list[Photo]

    @property
    def start(self) -> float:
        return self.photos[0].when

    @property
    def end(self) -> float:
        return self.photos[-1].when


def burst_id(first: Photo, milliseconds: bool = False) -> str:
    """'20240501-101502-canon-eos-r5': the first photo's capture time as the camera shows it, and the camera.

    milliseconds: '20240501-101502.500-canon-eos-r5' when the time has a fraction (photos of a burst share seconds).
    """
    from dreammover_tasks.names import slug

    ms = first.taken.microsecond // 1000
    fraction = f".{ms:03d}" if milliseconds and ms else ""
    return f"{first.taken:%Y%m%d-%H%M%S}{fraction}-{slug(first.camera) or 'unknown-camera'}"


def photo_id(photo: Photo) -> str:
    """A manifest entry's id from its own first photo: burst_id with milliseconds.

    A burst that grows (a photo before, after or between its photos) leaves the first photo of each of its
    other pairs, and so their ids, unchanged: a rendered pair is not rendered again under a new id.
    """
    return burst_id(photo, milliseconds=True)


def group_bursts(photos: Iterable[Photo], gap_s: float) -> Iterator[Burst]:
    """Bursts of `photos` (sorted by `when`, then key), each yielded as soon as no later photo can extend it.

    One open burst per camera: two cameras shooting at the same moment make two bursts.
    """
    open_: dict[str, list[Photo]] = {}
    for photo in photos:
        for camera in [c for c, run in open_.items() if photo.when - run[-1].when > gap_s]:
            yield _burst(open_.pop(camera))
        open_.setdefault(photo.camera, []).append(photo)
    for run in sorted(open_.values(), key=lambda r: (r[0].when, r[0].key)):
        yield _burst(run)


def _burst(run: list[Photo]) -> Burst:
    return Burst(id=burst_id(run[0]), camera=run[0].camera, photos=run)
