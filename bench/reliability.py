"""Race benchmark for leases and writes: prints the figures quoted in docs/reliability.md.

    python bench/reliability.py                       # local disk and a local S3 server (moto, in process)
    python bench/reliability.py --backend local --races 200 --writes 800

takeover: a crashed run's expired lease, four runs taking it over at once, `--races` times; every
race must end with exactly one holder. writes: eight threads writing one key, `--writes` in all;
none may fail. The S3 server serves one request at a time (S3 applies each conditional request
atomically; moto alone does not, see tests/fault_harness.serialized_moto).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault_harness import concurrent_writes, s3_store, serialized_moto, takeover_races  # noqa: E402


def _stores(backend: str, stack: contextlib.ExitStack):
    from dreammover_tasks.storage import LocalStorage

    if backend in ("local", "both"):
        yield "local", lambda name: LocalStorage(stack.enter_context(tempfile.TemporaryDirectory()) + "/" + name)
    if backend in ("s3", "both"):
        url = stack.enter_context(serialized_moto())
        yield "s3", lambda name: s3_store(url, "bench", prefix=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["local", "s3", "both"], default="both")
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--writes", type=int, default=800, help="in all, over 8 threads")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        for name, make in _stores(args.backend, stack):
            start = time.perf_counter()
            counts = takeover_races(make("takeover"), races=args.races)
            print(f"takeover {name}: {args.races} races, {counts.count(1)} with one holder, "
                  f"{sum(c > 1 for c in counts)} with 2+, {counts.count(0)} with none "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            start = time.perf_counter()
            errors = concurrent_writes(make("writes"), threads=8, rounds=args.writes // 8)
            first = f"; first: {errors[0]}" if errors else ""
            print(f"writes {name}: {args.writes} writes, {len(errors)} failed "
                  f"({time.perf_counter() - start:.1f} s){first}", flush=True)


if __name__ == "__main__":
    main()
