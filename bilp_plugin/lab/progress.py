"""Progress of the points a command runs, as ``bilp: ...`` lines on stderr: one line per ``every_s`` seconds of a
running point (a point shorter than that prints none), never a flood.

* :class:`PointProgress`: one point's phase (``distill``, ``evaluate``), its step out of the total (the upstream's
  iteration, the evaluated network) and the time left in the phase, extrapolated from the steps done so far.
* :func:`eta_line`: after each finished point, how many are done and about how long the rest take.

Reads ``time.perf_counter`` only (never ``time.time``, which a reproducible launch replaces).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bilp_plugin.logs import say

EVERY_S = 30.0
"""Seconds between two lines of one point within a phase."""


def duration(seconds: float) -> str:
    """``75`` -> ``"1m15s"``; ``4000`` -> ``"1h07m"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class PointProgress:
    """Reports one point: ``step(phase, done, total)`` whenever the host knows more; prints when ``every_s``
    seconds have passed since the last line (or the start). The time left is extrapolated within the phase."""

    def __init__(self, label: str, every_s: float | None = None, clock: Callable[[], float] = time.perf_counter,
                 write: Callable[[str], None] = say) -> None:
        self.label = label
        self.every_s = EVERY_S if every_s is None else every_s
        self.clock = clock
        self.write = write
        self.started = clock()
        self.phase: str | None = None
        self.phase_started = self.started
        self.first_done = 0
        self.last_line = self.started

    def step(self, phase: str, done: int, total: int | None = None) -> None:
        now = self.clock()
        if phase != self.phase:
            self.phase, self.phase_started, self.first_done = phase, now, done
        if now - self.last_line < self.every_s:
            return
        self.last_line = now
        self.write(f"{self.label}: {self._where(phase, done, total)}, {duration(now - self.started)} elapsed"
                   + self._left(now, done, total))

    @staticmethod
    def _where(phase: str, done: int, total: int | None) -> str:
        return f"{phase} {done}/{total}" if total else f"{phase} {done}"

    def _left(self, now: float, done: int, total: int | None) -> str:
        steps = done - self.first_done
        if not total or steps <= 0:
            return ""
        per_step = (now - self.phase_started) / steps
        return f", about {duration(per_step * max(0, total - done))} left in {self.phase}"


def eta_line(done: int, total: int, stored: int, seconds: list[float], jobs: int) -> str:
    """``4/12 points done (2 stored earlier); about 25m00s left (mean 6m15s per point, 2 at a time)``."""
    earlier = f" ({stored} stored earlier)" if stored else ""
    line = f"{done}/{total} points done{earlier}"
    if seconds and done < total:
        mean = sum(seconds) / len(seconds)
        left = mean * (total - done) / max(1, min(jobs, total - done))
        line += f"; about {duration(left)} left (mean {duration(mean)} per point, {jobs} at a time)"
    return line
