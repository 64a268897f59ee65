"""The run record a ``--bilp`` run writes: what ran, what level 1 kept, what level 2 selected, what it cost.

Layout of ``<out>/``:

* ``config.json``: BiLP config, upstream name and arguments, argv, versions, start time.
* ``level1.json`` and ``kept_indices.npy``: the kept dataset indices (int64, ascending), per-class counts, the
  score file's path, sha256 and metadata; ``scores.npz`` when the scores were made during the run.
* ``level2.jsonl``: one JSON object per selection (experiment, iteration, class, batch, kept, mu, sigma, the two
  thresholds, ITE seconds, seconds since the run started).
* ``summary.json``: totals written at exit: selections, draws, real rows seen and kept by level 2, the level-2
  rule that ran, ITE seconds, wall seconds of the matching loop; and the test accuracy the upstream printed
  (``evaluations``: every evaluation line its adapter's ``read_accuracy`` hook read, in order; ``accuracy``: the
  last line that sums up the run, else the last evaluation; ``null`` when it printed none).
* ``result.json`` (optional, written by a host beside the record: ``bilp demo``, ``bilp sweep``, the built-in
  host): ``accuracy``, a list of test accuracies in [0, 1] (one per evaluated network), and the run's settings.

The record is created only once the run's inputs are accepted (flags, score file, the adapter's checks, level 1):
a refused run leaves none. Every file is written atomically (:mod:`bilp_plugin.files`) except ``level2.jsonl``,
appended line by line; ``level1.json`` is written after ``kept_indices.npy`` and commits it. A run killed before
its ``summary.json`` leaves an interrupted record, which a new run with the same ``--bilp-out`` replaces.

:class:`RunRecord` writes a record (the patched upstreams import only this writer); the lab reads records back
(:mod:`bilp_plugin.lab.records`).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import socket
import sys
import time
from datetime import datetime
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin import __version__, files
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.method import scorefile
import bilp_plugin.runtime.printed as printed


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def default_out(upstream: str) -> Path:
    return Path("bilp_runs") / f"{upstream}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


CONFIG, LEVEL1, KEPT, SCORES, LEVEL2, SUMMARY, RESULT = ("config.json", "level1.json", "kept_indices.npy",
                                                         "scores.npz", "level2.jsonl", "summary.json", "result.json")
RECORD_FILES = (CONFIG, LEVEL1, KEPT, SCORES, LEVEL2, SUMMARY, RESULT)
RUN_FOLDER = ".bilp-run"
"""Marks a folder a host made for one run's record (a launched upstream's point), which it fills with the
upstream's own output and log before the run starts."""


def check_out(out: str | Path | None) -> Path | None:
    """Refuse, before any work, a ``--bilp-out`` that cannot hold a new record: a link to nothing or to itself, a
    file, a folder below a file, a folder without write permission, a folder holding files that are not a run
    record, a folder a live process holds, or the finished record of another run (an interrupted one, whose
    process has ended without its ``summary.json``, is replaced). Returns ``out`` as a path."""
    path = Path(out) if out else None
    files.check_folder(path or Path("bilp_runs"), "--bilp-out")
    if path is None or not path.is_dir():
        return path
    pid = files.holder(path)
    if pid is not None:
        raise BiLPError(f"--bilp-out {path} is in use by process {pid} (another run writes its record there): "
                        "wait for it to finish, or choose another --bilp-out")
    entries = files.visible_entries(path)
    if entries and not (path / CONFIG).is_file() and not (path / RUN_FOLDER).is_file():
        raise BiLPError(f"--bilp-out {path} holds files that are not a run record ({', '.join(entries[:3])}): "
                        "choose a new or empty folder")
    if (path / SUMMARY).exists():
        raise BiLPError(f"{path} already holds a run record: choose another --bilp-out")
    return path


class RunRecord:
    """Writes the files above into the folder ``held`` holds for this process (:func:`bilp_plugin.files.hold`,
    released when the record closes), which :func:`check_out` accepted. Never calls ``time.time`` (a
    reproducible launch replaces it with a counting clock that the upstream also reads)."""

    def __init__(self, held: files.Hold, config: BiLPConfig, upstream: str, upstream_args: Any,
                 read_accuracy: Callable[[str], printed.Accuracy | None] | None = None) -> None:
        self.held = held
        self.dir = held.folder
        self.written: set[str] = set()
        if (self.dir / CONFIG).exists():
            say(f"replacing the interrupted run record in {self.dir}")
            for name in RECORD_FILES:
                (self.dir / name).unlink(missing_ok=True)
        self.started = time.perf_counter()
        self.rule = config.rule
        self.closed = False
        self.totals: dict[str, Any] = {"experiments": 0, "draws": 0, "selections": 0, "rows": 0, "kept_rows": 0,
                                       "ite_s": 0.0, "first_draw_s": None, "last_draw_s": None}
        self._write_json(CONFIG, {
            "bilp": config.as_dict(), "upstream": upstream, "upstream_args": _jsonable(vars(upstream_args)),
            "argv": sys.argv, "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "process": {"host": socket.gethostname(), "pid": os.getpid()},
            "versions": {"bilp_plugin": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
        })
        self.read_accuracy = read_accuracy
        self.evaluations: list[printed.Accuracy] = []
        self.tap = printed.tap(self._printed) if read_accuracy else None
        atexit.register(self.close)

    def _printed(self, line: str) -> None:
        """A line the upstream printed: kept when it reports an accuracy."""
        assert self.read_accuracy is not None
        found = self.read_accuracy(line)
        if found is not None:
            self.evaluations.append(found)

    def _untap(self) -> None:
        if self.tap is not None:
            printed.untap(self.tap)
            self.tap = None

    def level1(self, kept: np.ndarray, summary: dict[str, Any]) -> None:
        """The kept indices and their summary (written once: every experiment keeps the same set)."""
        self.written.add(KEPT)
        files.save_npy(self.dir / KEPT, kept)
        self._write_json(LEVEL1, _jsonable(summary))

    def scores(self, score_file: scorefile.ScoreFile) -> None:
        """The score file made during the run."""
        self.written.add(SCORES)
        scorefile.save(self.dir / SCORES, score_file)

    def new_experiment(self) -> int:
        self.totals["experiments"] += 1
        return self.totals["experiments"] - 1

    def draw(self) -> None:
        """One call of ``select_batch`` (selection or reuse): the clock of the matching loop."""
        now = time.perf_counter() - self.started
        self.totals["draws"] += 1
        self.totals["first_draw_s"] = self.totals["first_draw_s"] if self.totals["draws"] > 1 else now
        self.totals["last_draw_s"] = now

    def selection(self, row: dict[str, Any]) -> None:
        self.totals["selections"] += 1
        self.totals["rows"] += row["batch"]
        self.totals["kept_rows"] += row["kept"]
        self.totals["ite_s"] += row["ite_s"]
        row = {"experiment": self.totals["experiments"] - 1, **row, "t": time.perf_counter() - self.started}
        self.written.add(LEVEL2)
        with open(self.dir / LEVEL2, "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        """Write ``summary.json`` (once: a later call, or the exit handler, changes nothing)."""
        atexit.unregister(self.close)
        if self.closed:
            return
        self.closed = True
        self._untap()
        final = [e for e in self.evaluations if e.get("final")]
        accuracy = (final or self.evaluations or [None])[-1]
        first, last = self.totals["first_draw_s"], self.totals["last_draw_s"]
        loop = (last - first) if first is not None and last is not None else None
        t = self.totals
        share = t["ite_s"] / loop if loop else None
        try:
            self._write_json(SUMMARY, {**t, "rule": self.rule, "matching_loop_s": loop, "ite_share": share,
                                       "wall_s": time.perf_counter() - self.started, "accuracy": accuracy,
                                       "evaluations": self.evaluations})
        except OSError as err:  # at the run's end (often at exit): one line, the record stays interrupted
            say(f"error: {files.os_error(err)}; the run record in {self.dir} has no summary.json")
            return
        finally:
            self.held.release()
        if t["selections"]:
            say(f"BiLP level 2: kept {t['kept_rows']} of {t['rows']} real rows in {t['selections']} selections "
                f"({100 * t['kept_rows'] / t['rows']:.1f}%, rule {self.rule}); ITE {t['ite_s']:.2f} s"
                + (f", {100 * share:.1f}% of the matching loop" if share else ""))
        say(f"BiLP run record written: {self.dir}")

    def discard(self) -> None:
        """Remove what this record wrote, and the folders it created (a run refused after its record began)."""
        atexit.unregister(self.close)
        self.closed = True
        self._untap()
        for name in self.written:
            (self.dir / name).unlink(missing_ok=True)
        self.held.discard()

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        self.written.add(name)
        files.write_json(self.dir / name, payload, default=repr)


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    """``result.json``: the accuracy of a run, beside its record."""
    files.write_json(Path(run_dir) / RESULT, result)
