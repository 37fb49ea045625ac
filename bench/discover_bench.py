"""Discovery benchmark: photos per second on one core and peak memory as the archive grows (docs/pipeline.md).

    python bench/discover_bench.py                      # 1,000 and 5,000 photos of 12 MP, one core each
    python bench/discover_bench.py --sizes 1000 --keep /tmp/arc
    python bench/discover_bench.py --measure            # the threshold measurements quoted in docs/pipeline.md
    python bench/discover_bench.py --stages /tmp/arc    # CPU ms per stage of a burst photo (docs/pipeline.md)

The archive: a few distinct 12 MP JPEGs (4000x3000) are encoded once, in bursts of three views of one scene
(camera panning) and singles; every photo of the archive is one of them with its own EXIF (capture time,
camera) spliced in (tests/discover_archive.with_exif), so 5,000 photos cost 5,000 file writes, not 5,000
encodes. Discovery reads each photo's header, decodes (grey, at 1/8 scale, draft mode) only photos that are in a
burst, and matches those. `--burst-share` sets how many photos are in bursts (1.0: every photo is decoded,
the worst case). Each size runs in a fresh process pinned to one core; its peak RSS is that process's.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from discover_archive import exif_bytes, scene, subject, view, with_exif  # noqa: E402

W, H = 4000, 3000
T0 = datetime(2024, 6, 1, 9, 0, 0)


def _encode(rgb, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes()


def base_photos(bursts: int, singles: int, quality: int) -> tuple[list[list[bytes]], list[bytes]]:
    """`bursts` triples of 12 MP views of one scene (the camera pans 1/10 of the width per shot) and `singles`."""
    cw, ch = W + W // 4, H + H // 10
    ball = subject(1, H // 8)
    triples = []
    for b in range(bursts):
        canvas = scene(100 + b, (cw, ch))
        triples.append([_encode(view(canvas, (i * W // 10, i * H // 40), (W, H), ball, (W // 5 + i * W // 4, H // 3)),
                                quality) for i in range(3)])
    alone = [_encode(view(scene(500 + s, (W, H)), (0, 0), (W, H)), quality) for s in range(singles)]
    return triples, alone


def write_archive(root: Path, n: int, burst_share: float, triples, singles) -> dict:
    """n photos under root/dNNN/ (1,000 a folder): bursts of 3 (0.5 s apart) for `burst_share` of them, singles."""
    cameras = [("Canon", "EOS R5"), ("Apple", "iPhone 15 Pro"), ("SONY", "ILCE-7M4")]
    t = T0
    written, bursts, size = 0, 0, 0
    while written < n:
        cam = cameras[written % len(cameras)]
        # Bursts spread through the archive: at every point about `burst_share` of the photos are in one.
        in_burst = written + 3 <= n and 3 * (bursts + 1) <= burst_share * (written + 3) + 1e-9
        shots = triples[bursts % len(triples)] if in_burst else [singles[written % len(singles)]]
        for i, jpeg in enumerate(shots):
            data = with_exif(jpeg, exif_bytes(t + timedelta(seconds=0.5 * i), *cam))
            path = root / f"d{written // 1000:03d}" / f"IMG_{written:05d}.JPG"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written, size = written + 1, size + len(data)
        bursts += in_burst
        t += timedelta(minutes=1)  # far apart: singles stay single, bursts stay separate
    return {"photos": written, "bursts": bursts, "mean_bytes": size // max(written, 1)}


def run_once(source: str) -> dict:
    """discover(source) in this process, on one core: wall time, photos/s, peak RSS, pairs found."""
    import cv2

    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    from dreammover.discover import discover

    start, cpu = time.perf_counter(), time.process_time()
    result = discover(source)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # Wall time on a shared machine includes waiting for the core: CPU time is what one core of our own costs.
    return {"photos": result.photos, "seconds": round(seconds, 2), "photos_per_s": round(result.photos / seconds, 1),
            "cpu_s": round(cpu, 2), "photos_per_cpu_s": round(result.photos / cpu, 1),
            "pairs": len(result.pairs), "rejected": len(result.rejected),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _child(source: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, __file__, "--run", source], env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure() -> None:
    """The verdict measures (matches, inliers, inlier ratio, motion) of same-scene pans, cuts and near-duplicates."""
    import numpy as np

    from dreammover.discover import DiscoverConfig
    from dreammover.discover.verify import compare, features

    cfg = DiscoverConfig(min_inliers=4, min_inlier_ratio=0, min_motion=0, max_motion=10)
    w, h = 320, 240
    ball = subject(1, h // 8)
    rows = {"pan": [], "cut": [], "duplicate": []}
    for seed in range(20):
        canvas = scene(seed, (2 * w, 2 * h))
        a = view(canvas, (0, 0), (w, h), ball, (20, h // 2), noise=1.5, seed=seed)
        f = features(a, cfg)
        for step in (w // 16, w // 8, w // 4, w // 2):
            rows["pan"].append((step / w, compare(f, features(view(canvas, (step, step // 4), (w, h), ball,
                                                                        (w // 2, h // 3)), cfg), cfg)))
        other = view(scene(1000 + seed, (2 * w, 2 * h)), (0, 0), (w, h), ball, (20, h // 2))
        rows["cut"].append((0, compare(f, features(other, cfg), cfg)))
        rows["duplicate"].append((0, compare(f, features(view(canvas, (0, 0), (w, h), ball, (20, h // 2), noise=1.5,
                                                              seed=seed + 99), cfg), cfg)))
    for kind, found in rows.items():
        for step in sorted({s for s, _ in found}):
            vs = [v for s, v in found if s == step]
            q = lambda xs: " / ".join(f"{x:.3g}" for x in np.percentile(xs, [0, 50, 100]))  # noqa: E731
            print(f"{kind:9s} pan {step:.3f} of width: inliers {q([v.inliers for v in vs])}  "
                  f"ratio {q([v.inlier_ratio for v in vs])}  motion {q([v.motion for v in vs])}  (min/median/max)")


def stages(source: Path, n: int = 60) -> None:
    """CPU ms per photo of each stage discovery runs on a burst photo: read, reduced grey decode, ORB, matching."""
    import cv2

    from dreammover.discover import DiscoverConfig
    from dreammover.discover.photos import thumbnail
    from dreammover.discover.verify import compare, features

    cv2.setNumThreads(1)
    cfg = DiscoverConfig()
    spent = dict.fromkeys(["read", "decode", "orb", "compare"], 0.0)

    def timed(stage, fn, *args):
        start = time.process_time()
        out = fn(*args)
        spent[stage] += time.process_time() - start
        return out

    found = []
    paths = sorted(source.rglob("*.JPG"))[:n]
    for path in paths:
        data = timed("read", path.read_bytes)
        grey = timed("decode", thumbnail, data, path.name, cfg.thumb_size, cfg.max_pixels, "L")
        found.append(timed("orb", features, grey, cfg))
    for f0, f1 in zip(found, found[1:]):  # every consecutive pair: one candidate per photo, a long burst's rate
        timed("compare", compare, f0, f1, cfg)
    print(json.dumps({k: round(1000 * v / len(paths), 2) for k, v in spent.items()} | {"photos": len(paths)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="archive sizes, comma-separated")
    parser.add_argument("--burst-share", type=float, default=0.3, help="share of photos in bursts of three")
    parser.add_argument("--quality", type=int, default=50, help="JPEG quality of the base photos")
    parser.add_argument("--keep", type=Path, help="write the archive here (kept) instead of a temporary folder")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--measure", action="store_true", help="print the threshold measurements and exit")
    parser.add_argument("--stages", type=Path, help="CPU ms per stage for the first 60 photos under this folder")
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_once(args.run)))
        return
    if args.measure:
        measure()
        return
    if args.stages:
        stages(args.stages)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    root = args.keep or Path(tempfile.mkdtemp(prefix="discover-bench-"))
    try:
        start = time.perf_counter()
        triples, singles = base_photos(bursts=6, singles=6, quality=args.quality)
        info = write_archive(root, sizes[-1], args.burst_share, triples, singles)
        print(f"archive: {info['photos']} photos of {W}x{H} ({info['mean_bytes'] / 1e6:.2f} MB each on average), "
              f"{info['bursts']} bursts of 3, written in {time.perf_counter() - start:.0f} s")
        for n in sizes:
            # The first n photos: whole folders of 1,000 (a smaller size is a prefix of the larger archive).
            source = root if n == sizes[-1] else _subset(root, n)
            print(json.dumps({"size": n, **_child(str(source))}))
    finally:
        if not args.keep:
            for folder in [root, *root.parent.glob(f"{root.name}-first-*")]:
                shutil.rmtree(folder, ignore_errors=True)


def _subset(root: Path, n: int) -> Path:
    """A folder of hard links to the first n photos (no copies)."""
    sub = root.parent / f"{root.name}-first-{n}"
    for path in sorted(root.rglob("*.JPG"))[:n]:
        target = sub / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(path, target)
    return sub


if __name__ == "__main__":
    main()
