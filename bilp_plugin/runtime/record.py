"""The run record a ``--bilp`` run writes: what ran, what level 1 kept, what level 2 selected, what it cost.

Layout of ``<out>/``:

* ``config.json``: BiLP config, upstream name and arguments, argv, versions, start time.
* ``level1.json`` and ``kept_indices.npy``: the kept dataset indices (int64, ascending), per-class counts, the
  score file's path, sha256 and metadata; ``scores.npz`` when the scores were made during the run.
* ``level2.jsonl``: one JSON object per selection (experiment, iteration, class, batch, kept, mu, sigma, the two
  thresholds, ITE seconds, seconds since the run started).
* ``summary.json``: totals written at exit: selections, draws, real rows seen and kept by level 2, the level-2
  rule that ran, ITE seconds, wall seconds of the matching loop.
* ``result.json`` (optional, written by a host beside the record: ``bilp demo``, ``bilp sweep``, the built-in
  host): ``accuracy``, a list of test accuracies in [0, 1] (one per evaluated network), and the run's settings.

:class:`RunRecord` writes a record; :func:`load_run` and :func:`find_runs` read records back (:class:`Run`).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin import __version__
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.method import scorefile


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def default_out(upstream: str) -> Path:
    return Path("bilp_runs") / f"{upstream}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


class RunRecord:
    """Writes the files above; refuses to write into a folder that already holds a record. Never calls
    ``time.time`` (a reproducible launch replaces it with a counting clock that the upstream also reads)."""

    def __init__(self, out: str | Path | None, config: BiLPConfig, upstream: str, upstream_args: Any) -> None:
        self.dir = Path(out) if out else default_out(upstream)
        if (self.dir / "config.json").exists():
            raise BiLPError(f"{self.dir} already holds a run record: choose another --bilp-out")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.rule = config.rule
        self.closed = False
        self.totals: dict[str, Any] = {"experiments": 0, "draws": 0, "selections": 0, "rows": 0, "kept_rows": 0,
                                       "ite_s": 0.0, "first_draw_s": None, "last_draw_s": None}
        self._write_json("config.json", {
            "bilp": config.as_dict(), "upstream": upstream, "upstream_args": _jsonable(vars(upstream_args)),
            "argv": sys.argv, "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "versions": {"bilp_plugin": __version__, "torch": torch.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
        })
        atexit.register(self.close)

    def level1(self, kept: np.ndarray, summary: dict[str, Any]) -> None:
        """The kept indices and their summary (written once: every experiment keeps the same set)."""
        np.save(self.dir / "kept_indices.npy", kept)
        self._write_json("level1.json", _jsonable(summary))

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
        with open(self.dir / "level2.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        """Write ``summary.json`` (once: a later call, or the exit handler, changes nothing)."""
        atexit.unregister(self.close)
        if self.closed:
            return
        self.closed = True
        first, last = self.totals["first_draw_s"], self.totals["last_draw_s"]
        loop = (last - first) if first is not None and last is not None else None
        t = self.totals
        share = t["ite_s"] / loop if loop else None
        self._write_json("summary.json", {**t, "rule": self.rule, "matching_loop_s": loop, "ite_share": share,
                                          "wall_s": time.perf_counter() - self.started})
        if t["selections"]:
            say(f"BiLP level 2: kept {t['kept_rows']} of {t['rows']} real rows in {t['selections']} selections "
                f"({100 * t['kept_rows'] / t['rows']:.1f}%, rule {self.rule}); ITE {t['ite_s']:.2f} s"
                + (f", {100 * share:.1f}% of the matching loop" if share else ""))
        say(f"BiLP run record written: {self.dir}")

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        (self.dir / name).write_text(json.dumps(payload, indent=1, default=repr))


RESULT = "result.json"


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    """``result.json``: the accuracy of a run, beside its record."""
    (Path(run_dir) / RESULT).write_text(json.dumps(result, indent=1))


# ------------------------------------------------------------------------------------------------- reading
@dataclass
class Run:
    """One run record and what it holds (absent parts are ``None`` or empty)."""

    dir: Path
    name: str
    config: dict[str, Any]
    level1: dict[str, Any] | None = None
    kept: np.ndarray | None = None
    level2: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    result: dict[str, Any] | None = None

    @property
    def bilp(self) -> dict[str, Any]:
        return self.config.get("bilp", {})

    @property
    def accuracy(self) -> list[float]:
        return [float(a) for a in (self.result or {}).get("accuracy", [])]

    @property
    def method(self) -> str:
        args = self.config.get("upstream_args", {})
        return str((self.result or {}).get("method") or args.get("method") or "?")

    @property
    def ite_share(self) -> float | None:
        s = self.summary or {}
        return s.get("ite_share") if s.get("selections") else None

    def scores_path(self) -> Path | None:
        own = self.dir / "scores.npz"
        if own.is_file():
            return own
        named = (self.level1 or {}).get("scores")
        if named:
            path = Path(named)
            return path if path.is_absolute() or path.is_file() else self.dir / path
        return None

    def scores(self) -> scorefile.ScoreFile | None:
        """The level-1 score file of the run, when it is still readable."""
        path = self.scores_path()
        return scorefile.load(path) if path is not None and path.is_file() else None


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def load_run(path: Path, name: str | None = None) -> Run:
    config = _json(path / "config.json")
    if config is None:
        raise BiLPError(f"{path} holds no run record (no config.json): pass a folder a --bilp run wrote")
    kept = np.load(path / "kept_indices.npy") if (path / "kept_indices.npy").is_file() else None
    level2_file = path / "level2.jsonl"
    level2 = [json.loads(line) for line in level2_file.read_text().splitlines() if line.strip()] \
        if level2_file.is_file() else []
    return Run(path, name or path.name, config, _json(path / "level1.json"), kept, level2,
               _json(path / "summary.json"), _json(path / RESULT))


def find_runs(paths: list[Path]) -> list[Run]:
    """Every record at or below ``paths``, in path order, named by their path relative to the given folder."""
    found: list[Run] = []
    for top in paths:
        if not top.is_dir():
            raise BiLPError(f"{top} is not a folder: pass run-record folders (or folders above them)")
        dirs = [top] if (top / "config.json").is_file() else sorted(p.parent for p in top.rglob("config.json"))
        for d in dirs:
            if (d / "config.json").is_file() and _json(d / "config.json").get("bilp") is not None:
                found.append(load_run(d, d.name if d == top else str(d.relative_to(top))))
    if not found:
        raise BiLPError(f"no run record (config.json) under {', '.join(map(str, paths))}")
    return found


