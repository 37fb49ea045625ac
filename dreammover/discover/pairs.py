"""Candidate pairs of one burst: consecutive photos checked on thumbnails; accepted ones become manifest entries."""
from __future__ import annotations

from .bursts import Burst, photo_id
from .config import DiscoverConfig
from .photos import Photo, PhotoProblem
from .verify import NO_MOTION, Verdict, compare, features


def chains_of(burst: Burst, source, cfg: DiscoverConfig) -> tuple[list[tuple[list[Photo], list[Verdict]]], list, list]:
    """Runs of accepted consecutive candidates in `burst`, the rejected candidates, and photos that failed to decode.

    Each photo is compared with the last accepted one (the anchor): a near-duplicate is skipped (the anchor
    stays, so the next photo is tried against it); a scene cut or too much motion ends the run there.
    Only this burst's features are held (the thumbnails are dropped once described).
    """
    found, problems = {}, []
    for p in burst.photos:
        try:
            found[p.key] = features(source.thumbnail(p.key, cfg.thumb_size, "L"), cfg)  # grey: all ORB needs
        except PhotoProblem as err:
            problems.append({"key": p.key, "note": f"skipped: {err}"})
    photos = [p for p in burst.photos if p.key in found]
    chains, rejected = [], []
    if not photos:
        return chains, rejected, problems
    run, verdicts = [photos[0]], []
    for photo in photos[1:]:
        verdict = compare(found[run[-1].key], found[photo.key], cfg)
        if verdict.reason is None:
            run.append(photo)
            verdicts.append(verdict)
            continue
        rejected.append({"burst": burst.id, "image0": run[-1].key, "image1": photo.key, "reason": verdict.reason,
                         "gap_s": round(photo.when - run[-1].when, 3), **verdict.measures()})
        if verdict.reason.startswith(NO_MOTION):
            continue
        if len(run) > 1:
            chains.append((run, verdicts))
        run, verdicts = [photo], []
    if len(run) > 1:
        chains.append((run, verdicts))
    return chains, rejected, problems


def entries_of(burst: Burst, chains, cfg: DiscoverConfig, taken_ids: set[str]) -> list[dict]:
    """Manifest entries: a pair per accepted candidate, or (chain) one keyframes entry per run of > 2 photos.

    Ids: photo_id of the entry's first photo (capture time to the millisecond + camera), so they survive the
    burst growing; -2, -3, ... only when photos share a millisecond (a camera without sub-second EXIF).
    """
    out = []

    def next_id(first: Photo) -> str:
        n, base = 1, photo_id(first)
        pid = base
        while pid in taken_ids:
            n += 1
            pid = f"{base}-{n}"
        taken_ids.add(pid)
        return pid

    for run, verdicts in chains:
        gaps = [round(b.when - a.when, 3) for a, b in zip(run, run[1:])]
        if cfg.chain and len(run) > 2:
            out.append({"id": next_id(run[0]), "keyframes": [p.key for p in run], "scores": [v.score for v in verdicts],
                        "motions": [round(v.motion, 4) for v in verdicts], "gaps_s": gaps, "camera": burst.camera})
            continue
        for (a, b), v, gap in zip(zip(run, run[1:]), verdicts, gaps):
            out.append({"id": next_id(a), "image0": a.key, "image1": b.key, "score": v.score, "gap_s": gap,
                        "motion": round(v.motion, 4), "camera": burst.camera})
    return out
