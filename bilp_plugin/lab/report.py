"""``bilp report RUN_DIR... [--out DIR]``: a Markdown summary and PNG plots from ``--bilp`` run records.

A RUN_DIR is a run record (a folder with ``config.json``, see :mod:`bilp_plugin.runtime.record`) or any folder above
records (``bilp report bilp_demo/`` finds every record below it). What each run contributes:

* ``config.json``: the BiLP config (criterion, alpha, beta, stratum) and the upstream's arguments;
* ``level1.json``, ``kept_indices.npy``: what level 1 kept; the scores are ``scores.npz`` in the record, else
  the file ``level1.json`` names (``scores``);
* ``level2.jsonl``: every level-2 selection (batch, kept, running mu and sigma, thresholds, ITE seconds);
* ``summary.json``: ITE seconds and matching-loop seconds (the ITE time share);
* ``result.json`` (optional, written by the host beside the record: ``bilp demo``, ``bilp sweep``,
  ``python -m bilp_plugin.lab.host``): ``accuracy``, a list of test accuracies in [0, 1] (one per evaluated
  network); any other host may write it too, and the report uses the runs that have it.

Plots (each skipped, with a line saying why, when its data is absent): per-class score histograms with the
kept threshold; test accuracy per loss stratum (runs with ``--bilp-criterion stratum``: the paper's Fig. 3);
the intra/inter-class variance ratio of each stratum's pixels (Fig. 4); level-2 keep rate and running ITE
statistics per iteration; ITE time share per run.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bilp_plugin import files
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import plots
from bilp_plugin.lab.records import Run, find_runs

REPORT = "report.md"
TITLE = "# BiLP report: "
"""The first line of every report this module writes: a folder holding another ``report.md`` is never written
into."""


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


def check_out(out: Path) -> None:
    """Refuse an output folder that cannot be written, or that holds files other than an earlier report."""
    files.check_folder(out, "--out")
    report = out / REPORT
    if report.is_dir() or report.is_file() and not report.read_bytes().startswith(TITLE.encode()):
        raise BiLPError(f"{report} exists and is not a report of `bilp report`: choose another --out")
    if not report.exists() and out.is_dir() and any(out.iterdir()):
        raise BiLPError(f"--out {out} holds other files: choose a new or empty folder (or one holding an earlier "
                        "report)")


def write_report(paths: list[Path], out: Path) -> Path:
    """Write ``out/report.md`` and its PNGs; returns the Markdown file."""
    runs = find_runs([Path(p) for p in paths])
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = [f"{TITLE}{len(runs)} run(s)", "", *runs_table(runs), ""]
    for title, make in plots.SECTIONS:
        sections += [f"## {title}", ""]
        try:
            lines = make(runs, out)
        except plots.Skip as skip:
            lines = [f"Skipped: {skip}."]
        sections += [*lines, ""]
    report = out / REPORT
    files.write_text(report, "\n".join(sections))
    return report
