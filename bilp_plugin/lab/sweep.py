"""``bilp sweep``: the maximum pruning ratio that keeps the distillation accuracy (the paper's Tables 1-2).

    bilp sweep --alphas 0.3,0.5,0.7,0.9 --seeds 0,1,2 --out bilp_sweep            # built-in DM on digits
    bilp sweep --host dc --dataset mnist --data-root $BILP_DATA --method DC --out sweep_dc

Runs the baseline (full real set) and every (criterion, alpha, seed) point, level 1 only (beta = 0), then reports
for each criterion (``loss``: keep the lowest-loss samples; ``random``: a random subset of the same size) the
largest alpha whose mean accuracy stays within the baseline's std (:mod:`bilp_plugin.lab.curve`), with the
standard error of each mean over seeds (:func:`bilp_plugin.lab.hosts.summary`). ``--strata 1,...,10`` adds, per
seed, one run distilled from each named loss decile alone (S1 = largest loss; the paper's Fig. 3).

Resumable (:mod:`bilp_plugin.lab.resumable`): finished points are stored under ``<out>/points/`` and never rerun;
the settings that define the points (host, method, dataset, sizes, scoring) are kept in ``<out>/sweep.json``; a
rerun with other settings is refused, with other alphas, seeds, criteria or strata it only adds points;
``--budget`` stops it early, to be continued by the same command.

Writes ``sweep.md`` (the tables), ``sweep-results.json`` (``baseline``, ``by_alpha``, ``by_stratum``,
``max_alpha``, ``seeds``: the summaries of :func:`bilp_plugin.lab.hosts.summary`) and ``sweep-curve.png``
(accuracy against alpha).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.lab import curve, hosts, plots
from bilp_plugin.lab.resumable import PointRunner, check_budget, check_settings

FIXED = ("method", "dataset", "ipc", "iterations", "batch_real", "width", "model", "eval_models", "eval_epochs",
         "scores", "score_epochs", "upstream_args")
"""The settings every point of one sweep shares (``sweep.json``)."""


@dataclass(frozen=True)
class SweepSettings(hosts.LabSettings):
    """``bilp sweep``'s settings: the shared ones, the alphas, criteria and strata (comma-separated text), the
    folder, the time budget."""

    alphas: str = "0.3,0.5,0.7,0.9"
    criteria: str = "loss,random"
    strata: str = ""
    out: str = "bilp_sweep"
    budget: float | None = None


def sweep_points(args: SweepSettings) -> list[hosts.Point]:
    """The points ``bilp sweep``'s parsed options name: baseline per seed, each (alpha, criterion, seed), each
    (stratum, seed)."""
    seeds = hosts.parse_seeds(args.seeds)
    return (curve.points(curve.parse_alphas(args.alphas), seeds, curve.parse_criteria(args.criteria))
            + curve.stratum_points(curve.parse_strata(args.strata), seeds))


def settings(args: SweepSettings, host: str) -> dict[str, Any]:
    """What ``sweep.json`` keeps: the settings every point of the sweep shares."""
    return {"host": host, **{k: getattr(args, k) for k in FIXED}}


def run(args: SweepSettings) -> int:
    """The sweep of the module docstring."""
    started = time.perf_counter()
    check_budget(args.budget)
    alphas, seeds = curve.parse_alphas(args.alphas), hosts.parse_seeds(args.seeds)
    criteria, strata = curve.parse_criteria(args.criteria), curve.parse_strata(args.strata)
    out = files.check_folder(Path(args.out), "--out")
    host = hosts.make_host(args, out)  # a host that cannot run here refuses before anything is written
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, "sweep.json", settings(args, host.name))
    scores = hosts.score_file(args, out)
    todo = sweep_points(args)
    runner = PointRunner(host, out, scores, "sweep", args.jobs, args.budget, started)
    results = runner.run(todo)
    if runner.missing(todo):
        return runner.stopped(todo)
    base = hosts.summary([results[curve.baseline_name(s)] for s in seeds])
    table = {c: {a: hosts.summary([results[curve.point_name(c, a, s)] for s in seeds]) for a in alphas}
             for c in criteria}
    by_stratum = {k: hosts.summary([results[curve.stratum_name(k, s)] for s in seeds]) for k in strata}
    result_curve = curve.Curve.from_results(results, alphas, seeds, criteria)
    title = (f"Max-pruning-ratio sweep: {hosts.method_of(host, args)} on {args.dataset}, ipc {args.ipc}, "
             f"{args.iterations} iterations, {host.name} host; accuracy (%) over seeds {','.join(map(str, seeds))} x "
             f"{args.eval_models} networks")
    png = plots.alpha_curve(result_curve, out, "sweep-curve.png")
    markdown = "\n".join([title, "", *alpha_table(base, table), "", f"![accuracy against alpha]({png})", "",
                          *strata_table(by_stratum)])
    files.write_text(out / "sweep.md", markdown)
    files.write_json(out / "sweep-results.json", _json(base, table, by_stratum, seeds))
    print(markdown)
    return 0


def _cell(s: dict[str, Any]) -> str:
    """Mean ± std (%), and the standard error of the mean over seeds when there is one."""
    se = f" (se {100 * s['accuracy_se']:.1f})" if s.get("accuracy_se") is not None else ""
    return f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}{se}"


def alpha_table(base: dict[str, Any], table: dict[str, dict[float, dict[str, Any]]]) -> list[str]:
    """Markdown: the baseline, one row per alpha and criterion (``*`` = within the baseline's std), the ratios."""
    criteria = list(table)
    floor = 100 * (base["accuracy_mean"] - base["accuracy_std"])
    lines = [f"baseline (full real set): {_cell(base)} (floor {floor:.1f}); '*' = within the baseline's std; se = "
             "standard error of the mean over seeds", "",
             "| alpha | " + " | ".join(criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
    for a in sorted(next(iter(table.values()))):
        cells = [_cell(table[c][a]) + ("*" if curve.within(base, table[c][a]) else "") for c in criteria]
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    return [*lines, "", "max alpha within the baseline's std: "
            + ", ".join(f"{c} {curve.max_alpha(base, table[c]):g}" for c in criteria)]


def strata_table(by_stratum: dict[int, dict[str, Any]]) -> list[str]:
    """Markdown: the accuracy of each loss decile alone; none without strata."""
    if not by_stratum:
        return []
    rows = [f"| S{k} | {_cell(s)} |" for k, s in sorted(by_stratum.items())]
    return ["| loss stratum (S1 = largest loss) | accuracy (%) |", "|---|---|", *rows, ""]


def _json(base: dict[str, Any], table: dict[str, dict[float, dict[str, Any]]], by_stratum: dict[int, dict[str, Any]],
          seeds: list[int]) -> dict[str, Any]:
    return {"baseline": base, "by_alpha": {c: {str(a): s for a, s in t.items()} for c, t in table.items()},
            "by_stratum": {str(k): s for k, s in by_stratum.items()},
            "max_alpha": {c: curve.max_alpha(base, t) for c, t in table.items()}, "seeds": seeds}
