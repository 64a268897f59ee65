"""Run records read back (the files :mod:`bilp_plugin.runtime.record` writes), for ``bilp report`` and its plots:
:func:`load_run` and :func:`find_runs` return :class:`Run`, refusing a damaged file with one line (a truncated last
line of ``level2.jsonl``, from a killed run, is skipped). Every value the report uses is checked: its JSON type
(:data:`FIELDS`), then its range (:data:`RANGES`: finite, within its bounds); the kept indices lie within ``n`` and
within the score file they were chosen from; a score file named by a relative path is read only inside the record."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin.config import CRITERIA, STRATA
from bilp_plugin.errors import BiLPError
from bilp_plugin.method import scorefile
from bilp_plugin.runtime.record import CONFIG, KEPT, LEVEL1, LEVEL2, RESULT, SCORES, SUMMARY


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
    def printed_accuracy(self) -> dict[str, Any] | None:
        """The accuracy the upstream printed, as its record's ``summary.json`` keeps it (``None`` if none)."""
        return (self.summary or {}).get("accuracy")

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
            if path.is_absolute() or path.is_file():
                return path
            inside = (self.dir / path).resolve()
            return inside if inside.is_relative_to(self.dir.resolve()) else None  # never a path out of the record
        return None

    def scores(self) -> scorefile.ScoreFile | None:
        """The level-1 score file of the run, when it is still readable; refused when the kept indices lie beyond
        it."""
        path = self.scores_path()
        if path is None or not path.is_file():
            return None
        score_file = scorefile.load(path)
        if self.kept is not None and len(self.kept) and int(self.kept.max()) >= len(score_file.scores):
            raise _damaged(self.dir / KEPT, f"index {int(self.kept.max())} lies beyond its {len(score_file.scores)} "
                                            f"scores ({path})")
        return score_file


NUMBER = (int, float)
OPTIONAL_NUMBER = (int, float, type(None))
FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    CONFIG: {"bilp": (dict,), "upstream_args": (dict,), "upstream": (str,)},
    "bilp": {"criterion": (str,), "alpha": NUMBER, "beta": NUMBER, "stratum": (int, type(None))},
    LEVEL1: {"kept": (int,), "n": (int,), "scores": (str, type(None)), "scores_sha256": (str, type(None))},
    LEVEL2: {"batch": (int,), "kept": (int,), "iteration": (int, type(None)), "mu": OPTIONAL_NUMBER,
             "sigma": OPTIONAL_NUMBER, "low": OPTIONAL_NUMBER, "high": OPTIONAL_NUMBER, "ite_s": OPTIONAL_NUMBER},
    SUMMARY: {"selections": (int,), "ite_s": NUMBER, "matching_loop_s": OPTIONAL_NUMBER,
              "ite_share": OPTIONAL_NUMBER, "accuracy": (dict, type(None))},
    "accuracy": {"mean": NUMBER, "std": OPTIONAL_NUMBER, "networks": (int, type(None))},
    RESULT: {"accuracy": (list,), "method": (str, type(None))},
}
"""The fields the report reads, by file, and their JSON types (absent unless :data:`REQUIRED`)."""
REQUIRED: dict[str, tuple[str, ...]] = {LEVEL1: ("kept", "n"), LEVEL2: ("batch", "kept"), "accuracy": ("mean",)}


def _finite(value: float) -> bool:
    return math.isfinite(value)


def _share(value: float) -> bool:
    return math.isfinite(value) and 0 <= value < 1


def _nonnegative(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _count(value: int) -> bool:
    return value >= 0


RANGES: dict[str, dict[str, tuple[Callable[[Any], bool], str]]] = {
    "bilp": {"criterion": (lambda v: v in CRITERIA, f"one of {', '.join(CRITERIA)}"),
             "alpha": (_share, "in [0, 1)"), "beta": (_share, "in [0, 1)"),
             "stratum": (lambda v: 1 <= v <= STRATA, f"in 1..{STRATA}")},
    LEVEL1: {"kept": (_count, ">= 0"), "n": (_count, ">= 0")},
    LEVEL2: {"iteration": (_count, ">= 0"), "mu": (_finite, "finite"), "sigma": (_nonnegative, "finite and >= 0"),
             "low": (_finite, "finite"), "high": (_finite, "finite"), "ite_s": (_nonnegative, "finite and >= 0")},
    SUMMARY: {"selections": (_count, ">= 0"), "ite_s": (_nonnegative, "finite and >= 0"),
              "matching_loop_s": (_nonnegative, "finite and >= 0"), "ite_share": (_nonnegative, "finite and >= 0")},
}
"""The range of each value the report uses, by file (``None`` is left to :data:`FIELDS`): test, and its words."""


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
    for key, (test, words) in RANGES.get(kind, {}).items():
        item = value.get(key)
        if item is not None and not test(item):
            raise _damaged(path, f"{key!r} must be {words}, got {item!r}")
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
        if row.get("low") is not None and row.get("high") is not None and row["low"] > row["high"]:
            raise _damaged(path, f"line {number}: 'low' above 'high' ({row['low']} > {row['high']})")
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
    if level1 is not None and level1["kept"] > level1["n"]:
        raise _damaged(path / LEVEL1, f"'kept' must be in 0..'n' ({level1['n']}), got {level1['kept']}")
    result = _json(path / RESULT, RESULT)
    accuracy = (result or {}).get("accuracy", [])
    if not all(isinstance(a, NUMBER) and not isinstance(a, bool) for a in accuracy):
        raise _damaged(path / RESULT, f"'accuracy' must be a list of numbers, got {accuracy!r}")
    if not all(math.isfinite(a) and 0 <= a <= 1 for a in accuracy):
        raise _damaged(path / RESULT, f"'accuracy' must be numbers in [0, 1] (test accuracies), got {accuracy!r}")
    summary = _json(path / SUMMARY, SUMMARY)
    if (summary or {}).get("accuracy") is not None:
        _check_fields(path / SUMMARY, summary["accuracy"], "accuracy")
    return Run(path, name or path.name, config, level1, _kept(path / KEPT, level1), _level2(path / LEVEL2), summary,
               result)


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
