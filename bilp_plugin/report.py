"""``bilp report RUN_DIR... [--out DIR]``: a Markdown summary and PNG plots from ``--bilp`` run records.

A RUN_DIR is a run record (a folder with ``config.json``, see :mod:`bilp_plugin.record`) or any folder above
records (``bilp report bilp_demo/`` finds every record below it). What each run contributes:

* ``config.json``: the BiLP config (criterion, alpha, beta, stratum) and the upstream's arguments;
* ``level1.json``, ``kept_indices.npy``: what level 1 kept; the scores are ``scores.npz`` in the record, else
  the file ``level1.json`` names (``scores``);
* ``level2.jsonl``: every level-2 selection (batch, kept, running mu and sigma, thresholds, ITE seconds);
* ``summary.json``: ITE seconds and matching-loop seconds (the ITE time share);
* ``result.json`` (optional, written by the host beside the record: ``bilp demo``, ``bilp sweep``,
  ``python -m bilp_plugin.host``): ``accuracy``, a list of test accuracies in [0, 1] (one per evaluated
  network); any other host may write it too, and the report uses the runs that have it.

Plots (each skipped, with a line saying why, when its data is absent): per-class score histograms with the
kept threshold; test accuracy per loss stratum (runs with ``--bilp-criterion stratum``: the paper's Fig. 3);
the intra/inter-class variance ratio of each stratum's pixels (Fig. 4); level-2 keep rate and running ITE
statistics per iteration; ITE time share per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import plots
from bilp_plugin import scores as score_io
from bilp_plugin.errors import BiLPError


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
               _json(path / "summary.json"), _json(path / "result.json"))


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


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{100 * statistics.fmean(values):.1f} ± {100 * statistics.pstdev(values):.1f}"


def runs_table(runs: list[Run]) -> list[str]:
    lines = ["| run | upstream | method | criterion | alpha | beta | real kept | accuracy (%) | ITE share |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        b = r.bilp
        crit = b.get("criterion", "?") + (f" S{b['stratum']}" if b.get("stratum") else "")
        kept = f"{r.level1['kept']}/{r.level1['n']}" if r.level1 else "all"
        share = f"{100 * r.ite_share:.0f}%" if r.ite_share is not None else "-"
        lines.append(f"| {r.name} | {r.config.get('upstream', '?')} | {r.method} | {crit} | {b.get('alpha')} | "
                     f"{b.get('beta')} | {kept} | {_pct(r.accuracy)} | {share} |")
    return lines


def write_report(paths: list[Path], out: Path) -> Path:
    """Write ``out/report.md`` and its PNGs; returns the Markdown file."""
    runs = find_runs([Path(p) for p in paths])
    out.mkdir(parents=True, exist_ok=True)
    sections = [f"# BiLP report: {len(runs)} run(s)", "", *runs_table(runs), ""]
    for title, make in plots.SECTIONS:
        sections += [f"## {title}", ""]
        try:
            lines = make(runs, out)
        except plots.Skip as skip:
            lines = [f"Skipped: {skip}."]
        sections += [*lines, ""]
    report = out / "report.md"
    report.write_text("\n".join(sections))
    return report


def report_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    report = write_report([Path(p) for p in args.runs], out)
    print(f"wrote {report} and {len(list(out.glob('*.png')))} plot(s)")
    return 0


def load_scores(run: Run) -> score_io.ScoreFile | None:
    path = run.scores_path()
    return score_io.load(path) if path is not None and path.is_file() else None
