"""``bilp demo``: score, prune, distill with and without BiLP, evaluate, compare, report.

    bilp demo                                  # digits (ships with scikit-learn), built-in DM host
    bilp demo --method DC --out bilp_demo_dc
    bilp demo --host dc --dataset mnist --data-root $BILP_DATA --iterations 200 --seeds 0

Settings, each over ``--seeds`` (every run with ``--bilp``, so each writes its run record):

* baseline: the full real set (alpha = 0, beta = 0: the record is written, nothing else changes);
* BiLP level 1: keep the ``1 - alpha`` lowest-loss samples per class (score file made once, by the
  ``score_samples`` hook, into ``<out>/scores.npz``);
* BiLP levels 1+2: the same, plus adaptive pruning of each real batch at rate beta by ITE;
* random subset: per class, a seeded random subset of the level-1 size;
* with ``--curve`` (default on): level 1 by loss and by random selection at each of ``--curve-alphas`` too, for
  the accuracy-against-alpha curve and each criterion's max pruning ratio (:mod:`bilp_plugin.lab.curve`, the
  sweep's points and rule; the table's level-1 and random rows are its points at ``--alpha``);
* with ``--strata`` (default on): one run per loss decile S1..S10 at the first seed (the paper's Fig. 3).

The points run through :mod:`bilp_plugin.lab.resumable` like a sweep's. Writes ``<out>/runs/<point>/`` (record +
``result.json``), ``<out>/points/``, ``<out>/results.json``, ``<out>/results.md`` and ``<out>/report/``
(``bilp report`` on the runs, with the curve as ``alpha-curve.png``); never into an existing demo folder without
``--force``. What the defaults cost is measured in ``docs/demo.md``.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.config import STRATA, check_ratio
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import curve, hosts
from bilp_plugin.lab.resumable import PointRunner

MARKER = "demo.json"
SETTINGS = ("baseline", "level1", "level12", "random")


@dataclass(frozen=True)
class DemoSettings(hosts.LabSettings):
    """``bilp demo``'s settings: the shared ones, the table's alpha and beta, whether to run the curve (at
    ``curve_alphas``, comma-separated) and the 10 strata, the folder and whether to replace it."""

    alpha: float = 0.5
    beta: float = 0.2
    curve: bool = True
    curve_alphas: str = "0.3,0.5,0.7,0.9"
    strata: bool = True
    out: str = "bilp_demo"
    force: bool = False


def curve_alphas(args: DemoSettings) -> list[float]:
    """The curve's alphas (with the table's ``--alpha``), or none without ``--curve``."""
    if not args.curve:
        return []
    return sorted({*curve.parse_alphas(args.curve_alphas, "--curve-alphas"), args.alpha} - {0.0})


def points(args: DemoSettings) -> dict[str, list[hosts.Point]]:
    """The runs of each setting (and of each curve alpha and stratum) in run order; the level-1 and random rows
    are the curve's points at ``--alpha``."""
    seeds = hosts.parse_seeds(args.seeds)
    a, b = args.alpha, args.beta
    table = {
        "baseline": [hosts.Point(curve.baseline_name(s), seed=s) for s in seeds],
        "level1": [hosts.Point(curve.point_name("loss", a, s), alpha=a, seed=s) for s in seeds],
        "level12": [hosts.Point(f"level12-s{s}", alpha=a, beta=b, seed=s) for s in seeds],
        "random": [hosts.Point(curve.point_name("random", a, s), criterion="random", alpha=a, seed=s)
                   for s in seeds],
    }
    named = {p.name for group in table.values() for p in group}
    for point in curve.points(curve_alphas(args), seeds, list(curve.CRITERIA)):
        if point.name not in named:
            table.setdefault(f"alpha {point.alpha:g}", []).append(point)
    if args.strata:
        for k in range(1, STRATA + 1):
            table[f"S{k}"] = [hosts.Point(f"stratum{k:02d}-s{seeds[0]}", criterion="stratum", stratum=k,
                                         seed=seeds[0])]
    return table


def label(setting: str, args: DemoSettings) -> str:
    return {"baseline": "baseline (full real set)",
            "level1": f"BiLP level 1 (loss, alpha={args.alpha:g})",
            "level12": f"BiLP levels 1+2 (alpha={args.alpha:g}, beta={args.beta:g})",
            "random": f"random subset (alpha={args.alpha:g})"}.get(setting, f"loss stratum {setting}")


def check_out(out: Path, force: bool) -> None:
    """Refuse, before any work, an ``out`` that is neither new, nor empty, nor (with ``force``) a demo folder."""
    files.check_folder(out, "--out")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise BiLPError(f"{out} exists and is not empty: pass --force to replace it, or choose another --out")
        if not (out / MARKER).is_file():
            raise BiLPError(f"{out} is not a demo folder (no {MARKER}): --force replaces only demo folders; "
                            "choose another --out")


def prepare(out: Path, force: bool) -> None:
    """An empty or new ``out``; with ``force``, a previous demo folder there is removed first."""
    check_out(out, force)
    if out.exists() and any(out.iterdir()):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def run(args: DemoSettings) -> int:
    """The demo of the module docstring."""
    check_ratio("--alpha", args.alpha)
    check_ratio("--beta", args.beta)
    alphas, seeds = curve_alphas(args), hosts.parse_seeds(args.seeds)
    start = time.perf_counter()
    out = Path(args.out)
    check_out(out, args.force)
    new = not out.exists()
    prepare(out, args.force)
    files.write_json(out / MARKER, {"argv": sys.argv, **asdict(args)}, default=str)
    try:
        host = hosts.make_host(args, out)
    except BiLPError:
        if new:  # refused: leave nothing behind
            shutil.rmtree(out)
        raise
    scores = hosts.score_file(args, out)
    table = points(args)
    by_name = PointRunner(host, out, scores, "demo", args.jobs, started=start).run(
        [p for group in table.values() for p in group])
    results = {setting: [by_name[p.name] for p in group] for setting, group in table.items()}
    rows = [{"setting": s, "label": label(s, args), **hosts.summary(results[s])} for s in SETTINGS]
    result_curve = curve.Curve.from_results(by_name, alphas, seeds, list(curve.CRITERIA)) if alphas else None
    from bilp_plugin.lab.report import write_report

    report = write_report(sorted((out / "runs").iterdir()), out / "report")
    wall = time.perf_counter() - start
    markdown = table_markdown(rows, args, host, wall, result_curve)
    files.write_text(out / "results.md", markdown)
    files.write_json(out / "results.json",
                     {"host": host.name, "args": asdict(args), "wall_s": wall, "rows": rows,
                      "max_alpha": result_curve.best if result_curve else None,
                      "points": {s: [asdict(p) for p in g] for s, g in table.items()}, "results": results},
                     default=str)
    print(markdown)
    print(f"report: {report}")
    return 0


def table_markdown(rows: list[dict[str, Any]], args: DemoSettings, host: hosts.Host, wall: float,
                   result_curve: curve.Curve | None) -> str:
    """The comparison table (accuracy: mean +- std over every evaluated network of every seed), then the
    accuracy-against-alpha table with each criterion's max pruning ratio."""
    title = (f"BiLP demo: {hosts.method_of(host, args)} on {args.dataset}, ipc {args.ipc}, {args.iterations} "
             f"iterations, {host.name} host; accuracy over {len(hosts.parse_seeds(args.seeds))} seed(s) x "
             f"{args.eval_models} evaluation networks; time = mean seconds per run")
    lines = [title, "",
             "| setting | real kept | level 2 kept | accuracy (%) | distill (s) | evaluate (s) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        level2 = f"{100 * r['level2_kept']:.1f}%" if r["level2_kept"] is not None else "-"
        lines.append(f"| {r['label']} | {r['real_kept']}/{r['real_total']} | {level2} | "
                     f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | {r['distill_s']:.1f} | "
                     f"{r['eval_s']:.1f} |")
    n = len(hosts.parse_seeds(args.seeds)) * args.eval_models
    lines += ["", f"± is the std over the {n} accuracies (seeds x networks), not a standard error: the standard "
              f"error of a mean is std / {n ** 0.5:.1f} (the networks of one seed share its synthetic set, so it is "
              "larger in truth)."]
    if result_curve is not None:
        lines += ["", "Level 1 by loss against random selection of the same size, per alpha (accuracy %; the "
                  "curve: report/alpha-curve.png):", "", *result_curve.table()]
    extra = [part for part, on in (("the curve's runs", result_curve is not None), ("the 10 strata runs", args.strata))
             if on]
    runs = "the runs above" + "".join(f", {part}" for part in extra)
    lines += ["", f"total wall time {wall:.0f} s (scoring, {runs}; {args.jobs} at a time)", ""]
    return "\n".join(lines)
