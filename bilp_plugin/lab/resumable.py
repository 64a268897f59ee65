"""Run a list of points on a host, resumably: the mechanism ``bilp demo``, ``bilp sweep`` and ``bilp ablate`` share.

Layout of the command's folder ``<out>/``:

* ``<settings file>`` (``sweep.json``, ``ablate.json``, ...): the settings every point shares (host, method,
  dataset, sizes, scoring). A rerun with other settings is refused; with more points it only adds them.
* ``runs/<point>/``: the point's run record and ``result.json``, written by the host.
* ``points/<point>.json``: ``{"point", "result", "record", "seconds"}`` once the point has finished: the host's
  result, the level-2 totals of its record (``summary.json``: rows, kept rows, ITE share) and its wall seconds.
  A stored point is never rerun; a point whose run folder exists without it was interrupted and is rerun from
  scratch (never while a live process holds that folder). A stored point is checked before it is used: its
  name, a result with ``accuracy`` (numbers in [0, 1]), finite seconds, record totals that are numbers.

The command's folder is held by one process at a time (:func:`bilp_plugin.files.hold`): a second command on it is
refused naming the first's pid.

With a budget (``--budget SECONDS``), no point starts once the command's elapsed time plus the mean seconds of the
points finished so far would exceed it: the command stops early, and rerunning it continues where it stopped.
After each point a line says how many are done and about how long the rest take; while a point runs, its host
reports its phase and step (:mod:`bilp_plugin.lab.progress`).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import statistics
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.hosts import Host, Point
from bilp_plugin.lab.progress import eta_line
from bilp_plugin.logs import say

INCOMPLETE = 3
"""Exit status of a command stopped by its budget with points left (rerun it to continue)."""
RECORD_TOTALS = ("selections", "rows", "kept_rows", "ite_s", "matching_loop_s", "ite_share")
"""What a stored point keeps of its record's ``summary.json``."""


def stored_object(file: Path, what: str) -> dict[str, Any]:
    """A JSON object the command wrote earlier; a damaged one is refused with the way out (``what``)."""
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        value = err
    if not isinstance(value, dict):
        raise BiLPError(f"{file} is damaged ({value}): delete it to {what}")
    return value


def _number(value: Any, low: float = 0.0, high: float = math.inf) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and low <= value <= high


def check_entry(entry: dict[str, Any], name: str) -> str | None:
    """What is wrong with a stored point ``name`` (``None``: nothing): the fields the tables use."""
    point, result, totals = entry.get("point"), entry.get("result"), entry.get("record")
    if not isinstance(point, dict) or point.get("name") != name:
        return f"it stores point {point.get('name') if isinstance(point, dict) else point!r}, not {name}"
    if not isinstance(result, dict):
        return "it holds no result"
    accuracy = result.get("accuracy")
    if not isinstance(accuracy, list) or not all(_number(a, 0.0, 1.0) for a in accuracy):
        return f"its accuracy must be numbers in [0, 1], got {accuracy!r}"
    seconds = entry.get("seconds")
    if seconds is not None and not _number(seconds):
        return f"its seconds must be a finite number >= 0, got {seconds!r}"
    for key, value in (totals or {}).items() if isinstance(totals, dict) else [("record", totals)]:
        if value is not None and not _number(value, -math.inf):
            return f"its record total {key!r} must be a number, got {value!r}"
    return None


def check_owned(out: Path, file_name: str, what: str) -> None:
    """Refuse, before any work, an ``out`` that is not new, empty, or a folder of this command (``file_name``)."""
    files.check_folder(out, "--out")
    files.check_owned(out, "--out", file_name, what)


def check_settings(out: Path, file_name: str, settings: dict[str, Any]) -> None:
    """Write ``out/file_name``, or refuse when the folder holds points of other settings."""
    file = out / file_name
    if file.is_file():
        old = stored_object(file, "start afresh (the finished points stay in points/)")
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise BiLPError(f"{out} holds points run with other settings ({changes}): use the same settings to "
                            "resume, or another --out")
    else:
        files.write_json(file, settings, default=str)


def record_totals(run_dir: Path) -> dict[str, Any] | None:
    """The level-2 totals of the run record in ``run_dir`` (``None`` when it wrote no ``summary.json``)."""
    file = run_dir / "summary.json"
    if not file.is_file():
        return None
    try:
        summary = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return {k: summary.get(k) for k in RECORD_TOTALS} if isinstance(summary, dict) else None


def check_budget(budget_s: float | None) -> None:
    """``--budget`` is a positive number of seconds (or absent)."""
    if budget_s is not None and not budget_s > 0:
        raise BiLPError(f"--budget must be a positive number of seconds, got {budget_s:g}")


def run_one(host: Host, point: Point, run_dir: Path, scores: Path, clock: Callable[[], float] = time.perf_counter
            ) -> tuple[dict[str, Any], float]:
    """Run one point (in this process or a worker); returns its result and wall seconds."""
    start = clock()
    result = host.run(point, run_dir, scores)
    return result, clock() - start


class PointRunner:
    """Runs points of one command folder on one host (see the module docstring)."""

    def __init__(self, host: Host, out: Path, scores: Path, label: str, jobs: int = 1,
                 budget_s: float | None = None, started: float | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        check_budget(budget_s)
        self.host, self.out, self.scores, self.label = host, out, scores, label
        self.jobs = max(1, jobs)
        self.budget_s = budget_s
        self.clock = clock
        self.started = clock() if started is None else started
        self.results: dict[str, dict[str, Any]] = {}
        self.seconds: list[float] = []
        self.total = self.earlier = 0

    def run(self, points: list[Point]) -> dict[str, dict[str, Any]]:
        """Every point's result (the stored ones and those run now), each with its ``record`` totals; points the
        budget left unstarted are absent."""
        for point in points:
            entry = self._stored(point)
            if entry is not None:
                self.results[point.name] = {**entry["result"], "record": entry.get("record")}
                self.seconds += [entry["seconds"]] if entry.get("seconds") else []
        todo = [p for p in points if p.name not in self.results]
        for point in todo:
            self._check_free(point)
        self.total, self.earlier = len(points), len(points) - len(todo)
        say(f"{self.label}: {len(points)} points on the {self.host.name} host: {self.earlier} stored, {len(todo)} "
            f"to run, {min(self.jobs, max(1, len(todo)))} at a time")
        if self.jobs == 1 or len(todo) <= 1:
            for point in todo:
                if not self._affordable():
                    break
                self._finish(point, *run_one(self.host, point, self._fresh(point), self.scores, self.clock))
        else:
            self._in_pool(todo)
        return self.results

    def missing(self, points: list[Point]) -> list[Point]:
        return [p for p in points if p.name not in self.results]

    def stopped(self, points: list[Point]) -> int:
        """Say that the budget stopped the command early; returns :data:`INCOMPLETE`."""
        say(f"{self.label}: stopped by --budget {self.budget_s:g} with {len(self.missing(points))} of {len(points)} "
            f"points left: rerun the same command to continue")
        return INCOMPLETE

    def _in_pool(self, todo: list[Point]) -> None:
        queue = list(todo)
        running: dict[Future[tuple[dict[str, Any], float]], Point] = {}
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(self.jobs, len(todo)), mp_context=context) as pool:
            try:
                while queue or running:
                    while queue and len(running) < self.jobs and self._affordable():
                        point = queue.pop(0)
                        future = pool.submit(run_one, self.host, point, self._fresh(point), self.scores, self.clock)
                        running[future] = point
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._finish(running.pop(future), *future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise

    def _affordable(self) -> bool:
        if self.budget_s is None or not self.seconds:
            return True
        return self.clock() - self.started + statistics.fmean(self.seconds) <= self.budget_s

    def _stored(self, point: Point) -> dict[str, Any] | None:
        file = self.out / "points" / f"{point.name}.json"
        if not file.is_file():
            return None
        entry = stored_object(file, f"run point {point.name} again")
        wrong = check_entry(entry, point.name)
        if wrong is not None:
            raise BiLPError(f"{file} is damaged ({wrong}): delete it to run point {point.name} again")
        return entry

    def _check_free(self, point: Point) -> None:
        """Refuse a point whose run folder a live process holds (it runs: it was not interrupted)."""
        run_dir = self.out / "runs" / point.name
        pid = files.holder(run_dir)
        if pid is not None:
            raise BiLPError(f"{run_dir} is in use by process {pid}, which runs point {point.name}: wait for it to "
                            "finish, or stop it, then run this command again")

    def _fresh(self, point: Point) -> Path:
        """The point's run folder, cleared when an interrupted run left it."""
        run_dir = self.out / "runs" / point.name
        self._check_free(point)
        if run_dir.exists():
            say(f"{self.label}: {point.name} was interrupted; running it again")
            shutil.rmtree(run_dir)
        return run_dir

    def _finish(self, point: Point, result: dict[str, Any], seconds: float) -> None:
        record = record_totals(self.out / "runs" / point.name)
        files.write_json(self.out / "points" / f"{point.name}.json",
                         {"point": asdict(point), "result": result, "record": record, "seconds": seconds}, default=str)
        self.results[point.name] = {**result, "record": record}
        self.seconds.append(seconds)
        done = len(self.results)
        say(f"{self.label}: {point.name} finished; {eta_line(done, self.total, self.earlier, self.seconds, self.jobs)}")

