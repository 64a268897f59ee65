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

The record is created only once the run's inputs are accepted (flags, score file, the adapter's checks, level 1):
a refused run leaves none. Every file is written atomically (:mod:`bilp_plugin.files`) except ``level2.jsonl``,
appended line by line; ``level1.json`` is written after ``kept_indices.npy`` and commits it. A run killed before
its ``summary.json`` leaves an interrupted record, which a new run with the same ``--bilp-out`` replaces.

:class:`RunRecord` writes a record; :func:`load_run` and :func:`find_runs` read records back (:class:`Run`),
refusing a damaged file with one line (a truncated last line of ``level2.jsonl``, from a killed run, is skipped).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bilp_plugin import __version__, files
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.method import scorefile


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=repr))


def default_out(upstream: str) -> Path:
    return Path("bilp_runs") / f"{upstream}-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"


CONFIG, LEVEL1, KEPT, SCORES, LEVEL2, SUMMARY, RESULT = ("config.json", "level1.json", "kept_indices.npy",
                                                         "scores.npz", "level2.jsonl", "summary.json", "result.json")
RECORD_FILES = (CONFIG, LEVEL1, KEPT, SCORES, LEVEL2, SUMMARY, RESULT)


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
    if entries and not (path / CONFIG).is_file():
        raise BiLPError(f"--bilp-out {path} holds files that are not a run record ({', '.join(entries[:3])}): "
                        "choose a new or empty folder")
    if (path / SUMMARY).exists():
        raise BiLPError(f"{path} already holds a run record: choose another --bilp-out")
    return path


class RunRecord:
    """Writes the files above into the folder ``held`` holds for this process (:func:`bilp_plugin.files.hold`,
    released when the record closes), which :func:`check_out` accepted. Never calls ``time.time`` (a
    reproducible launch replaces it with a counting clock that the upstream also reads)."""

    def __init__(self, held: files.Hold, config: BiLPConfig, upstream: str, upstream_args: Any) -> None:
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
        atexit.register(self.close)

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
        first, last = self.totals["first_draw_s"], self.totals["last_draw_s"]
        loop = (last - first) if first is not None and last is not None else None
        t = self.totals
        share = t["ite_s"] / loop if loop else None
        self._write_json(SUMMARY, {**t, "rule": self.rule, "matching_loop_s": loop, "ite_share": share,
                                   "wall_s": time.perf_counter() - self.started})
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
        for name in self.written:
            (self.dir / name).unlink(missing_ok=True)
        self.held.discard()

    def _write_json(self, name: str, payload: dict[str, Any]) -> None:
        self.written.add(name)
        files.write_json(self.dir / name, payload, default=repr)


def write_result(run_dir: Path, result: dict[str, Any]) -> None:
    """``result.json``: the accuracy of a run, beside its record."""
    files.write_json(Path(run_dir) / RESULT, result)


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
        own = self.dir / SCORES
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


NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    CONFIG: {"bilp": (dict,), "upstream_args": (dict,), "upstream": (str,)},
    "bilp": {"criterion": (str,), "alpha": NUMBER, "beta": NUMBER, "stratum": (int, type(None))},
    LEVEL1: {"kept": (int,), "n": (int,), "scores": (str, type(None)), "scores_sha256": (str, type(None))},
    LEVEL2: {"batch": (int,), "kept": (int,), "iteration": (int, type(None)), "mu": OPTIONAL_NUMBER,
             "sigma": OPTIONAL_NUMBER, "low": OPTIONAL_NUMBER, "high": OPTIONAL_NUMBER},
    SUMMARY: {"selections": (int,), "ite_s": NUMBER, "matching_loop_s": OPTIONAL_NUMBER,
              "ite_share": OPTIONAL_NUMBER},
    RESULT: {"accuracy": (list,), "method": (str, type(None))},
}
"""The fields the report reads, by file, and their JSON types (absent unless :data:`REQUIRED`)."""
REQUIRED: dict[str, tuple[str, ...]] = {LEVEL1: ("kept", "n"), LEVEL2: ("batch", "kept")}


def _damaged(path: Path, why: str) -> BiLPError:
    return BiLPError(f"{path}: {why}; the run record is damaged: re-run it, or leave {path.parent} out of the "
                     "report")


def _check_fields(path: Path, value: Any, kind: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _damaged(path, f"expected a JSON object, got {type(value).__name__}")
    missing = [key for key in REQUIRED.get(kind, ()) if key not in value]
    if missing:
        raise _damaged(path, f"{', '.join(map(repr, missing))} missing")
    for key, types in FIELDS[kind].items():
        item = value.get(key)
        if key in value and (not isinstance(item, types) or isinstance(item, bool) and bool not in types):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise _damaged(path, f"{key!r} must be {wanted}, got {item!r}")
    return value


def _json(path: Path, kind: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise _damaged(path, f"unreadable ({type(err).__name__}: {err})") from None
    return _check_fields(path, value, kind)


def _level2(path: Path) -> list[dict[str, Any]]:
    """The selections of ``level2.jsonl``; a last line cut short by a kill is skipped."""
    if not path.is_file():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise _damaged(path, f"unreadable ({type(err).__name__}: {err})") from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            if number == len(lines):  # the last line, without its newline: the run was killed mid-write
                break
            raise _damaged(path, f"line {number} is not JSON ({err})") from None
        rows.append(_check_fields(path, row, LEVEL2))
        if not 0 <= row["kept"] <= row["batch"] or row["batch"] < 1:
            raise _damaged(path, f"line {number}: kept {row['kept']} of a batch of {row['batch']}")
    return rows


def _kept(path: Path, level1: dict[str, Any] | None) -> np.ndarray | None:
    """The kept indices, when ``level1.json`` committed them (without it, the run was killed between the two)."""
    if level1 is None:
        return None
    try:
        kept = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise _damaged(path, f"unreadable ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    n = level1.get("n")
    if kept.ndim != 1 or kept.dtype.kind not in "iu" or len(kept) != level1.get("kept", len(kept)) \
            or (len(kept) and (kept.min() < 0 or (n is not None and kept.max() >= n))):
        raise _damaged(path, f"expected {level1.get('kept')} integer indices in 0..{n}, got a {kept.dtype} array "
                             f"of shape {kept.shape}")
    return kept


def load_run(path: Path, name: str | None = None) -> Run:
    config = _json(path / CONFIG, CONFIG)
    if config is None:
        raise BiLPError(f"{path} holds no run record (no config.json): pass a folder a --bilp run wrote")
    _check_fields(path / CONFIG, config.get("bilp", {}), "bilp")
    level1 = _json(path / LEVEL1, LEVEL1)
    result = _json(path / RESULT, RESULT)
    accuracy = (result or {}).get("accuracy", [])
    if not all(isinstance(a, NUMBER) and not isinstance(a, bool) for a in accuracy):
        raise _damaged(path / RESULT, f"'accuracy' must be a list of numbers, got {accuracy!r}")
    return Run(path, name or path.name, config, level1, _kept(path / KEPT, level1), _level2(path / LEVEL2),
               _json(path / SUMMARY, SUMMARY), result)


def _is_record(config: Path) -> bool:
    """Whether a ``config.json`` is a run record's (a damaged one counts, to be refused by :func:`load_run`)."""
    try:
        value = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return True
    return not isinstance(value, dict) or "bilp" in value


def find_runs(paths: list[Path]) -> list[Run]:
    """Every record at or below ``paths``, in path order, named by their path relative to the given folder."""
    found: list[Run] = []
    for top in paths:
        if not top.is_dir():
            raise BiLPError(f"{top} is not a folder: pass run-record folders (or folders above them)")
        dirs = [top] if (top / CONFIG).is_file() else sorted(p.parent for p in top.rglob(CONFIG))
        for d in dirs:
            if (d / CONFIG).is_file() and _is_record(d / CONFIG):
                found.append(load_run(d, d.name if d == top else str(d.relative_to(top))))
    if not found:
        raise BiLPError(f"no run record (config.json) under {', '.join(map(str, paths))}")
    return found
