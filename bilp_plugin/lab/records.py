"""Run records read back (the files :mod:`bilp_plugin.runtime.record` writes), for ``bilp report`` and its plots:
:func:`load_run` and :func:`find_runs` return :class:`Run`, refusing a damaged file with one line (a truncated last
line of ``level2.jsonl``, from a killed run, is skipped)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
