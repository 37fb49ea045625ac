"""Progress of a bench run: one line per finished run with its time, how many are left and an ETA."""
from __future__ import annotations

import time
from typing import Callable


def duration(seconds: float) -> str:
    """12 s, 3m05s, 2h10m: short and unambiguous."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class BenchProgress:
    """Counts planned runs (pair, label, kind) and estimates what is left from the runs already timed.

    A run's estimate is the mean time of earlier runs with the same label, else of the same kind (an
    ablation is a 'dreammover' run); no ETA is claimed before every kind still to do was timed once.
    """

    def __init__(self, planned: list[tuple[str, str, str]], log: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic):
        self.todo = list(planned)
        self.total = len(planned)
        self.times: list[tuple[str, str, float]] = []   # (label, kind, seconds)
        self.log, self.clock = log, clock
        self._started = 0.0

    @property
    def finished(self) -> int:
        return self.total - len(self.todo)

    def start(self, pair: str, label: str) -> None:
        self._started = self.clock()
        self.log(f"[{self.finished + 1}/{self.total}] {pair} / {label} ...")

    def _guess(self, label: str, kind: str) -> float | None:
        for same in ((lambda t: t[0] == label), (lambda t: t[1] == kind)):
            seen = [t[2] for t in self.times if same(t)]
            if seen:
                return sum(seen) / len(seen)
        return None

    def eta(self) -> float | None:
        """Seconds for the runs still to do; None while some kind still to do was never timed."""
        guesses = [self._guess(label, kind) for _, label, kind in self.todo]
        return None if any(g is None for g in guesses) else float(sum(guesses))

    def done(self, pair: str, label: str, detail: str = "") -> float:
        """Mark (pair, label) finished (or failed/skipped) and log its time and the ETA; returns its seconds."""
        seconds = self.clock() - self._started
        match = next((t for t in self.todo if t[0] == pair and t[1] == label), None)
        if match is not None:
            self.todo.remove(match)
            self.times.append((label, match[2], seconds))
        left = len(self.todo)
        eta = self.eta()
        tail = "done" if not left else (f"{left} left, ETA {duration(eta)}" if eta is not None
                                         else f"{left} left, ETA after the first run of each kind")
        self.log(f"[{self.finished}/{self.total}] {pair} / {label}: {detail + '; ' if detail else ''}"
                 f"{duration(seconds)} ({tail})")
        return seconds

    def drop(self, pair: str) -> None:
        """A pair that cannot be run at all leaves the plan."""
        self.todo = [t for t in self.todo if t[0] != pair]
        self.total = len(self.times) + len(self.todo)
