"""``bilp demo``: score, prune, distill with and without BiLP, evaluate, compare, report, and say in plain words
what the table shows.

    bilp demo                                  # CIFAR-10 when $BILP_DATA holds it, else digits; built-in DM host
    bilp demo --data-root DIR                  # CIFAR-10 from DIR/cifar-10-batches-py
    bilp demo --dataset digits --method DC --out bilp_demo_dc
    bilp demo --host dc --dataset mnist --data-root $BILP_DATA --iterations 200 --seeds 0

Without ``--dataset`` the demo runs CIFAR-10 when the data root (``--data-root``, else ``$BILP_DATA``) holds
``cifar-10-batches-py`` (the paper's effect shows there at CPU scale), else digits (ships with scikit-learn,
offline). Each dataset has its settings (:data:`PRESETS`, fixed before any result was seen); a flag given on the
command line wins.

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

import argparse
import math
import os
import shutil
import statistics
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
from bilp_plugin.logs import say

MARKER = "demo.json"
SETTINGS = ("baseline", "level1", "level12", "random")
PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"host": "builtin", "iterations": 100, "eval_models": 3, "eval_epochs": 150, "seeds": "0,1,2",
               "alpha": 0.5, "curve_alphas": "0.3,0.5,0.7,0.9", "strata": True, "score_epochs": 10},
    "cifar10": {"host": "builtin", "iterations": 100, "eval_models": 2, "eval_epochs": 300, "seeds": "0,1",
                "alpha": 0.9, "curve_alphas": "0.5,0.9,0.99", "strata": False, "score_epochs": 2},
}
"""The demo's settings per dataset (any other dataset takes the digits row), each fixed for cost before any
result was seen (``docs/demo.md`` says why and what one run of each showed). A flag on the command line wins."""
CIFAR10 = "cifar-10-batches-py"


def pick_dataset(root: str | None) -> str:
    """``cifar10`` when the data root (``root``, else ``$BILP_DATA``) holds CIFAR-10, else ``digits``; a line
    says which and why."""
    folder = Path(root or os.environ.get("BILP_DATA") or ".").expanduser() / CIFAR10
    if root or os.environ.get("BILP_DATA"):
        if folder.is_dir():
            say(f"CIFAR-10 found in {folder}: the CIFAR-10 demo (--dataset digits for the offline one)")
            return "cifar10"
        where = f"no {folder}"
    else:
        where = "no data root (--data-root or BILP_DATA)"
    say(f"{where}: the digits demo, which needs no data. Digits has too little diversity for pruning by loss to "
        f"beat random selection (the paper, Sec. 5.5); pass --data-root DIR holding {CIFAR10} (docs/data.md), or "
        "--download DIR on a connected machine, for the CIFAR-10 demo")
    return "digits"


def download_cifar10(root: str) -> None:
    """CIFAR-10 in torchvision's layout under ``root``, fetched (and checked against its md5s) by torchvision, on a
    connected machine; nothing is fetched when it is there already."""
    from torchvision.datasets import CIFAR10 as Torchvision

    say(f"CIFAR-10 into {root} (torchvision's download, about 170 MB, once)")
    try:
        Torchvision(root, train=True, download=True)
    except (OSError, RuntimeError) as err:  # no connection: urllib's URLError is an OSError
        raise BiLPError(f"cannot download CIFAR-10 into {root} ({err}): without a connection, pass --data-root DIR "
                        f"holding {CIFAR10} (docs/data.md), or --dataset digits") from None


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with the dataset picked (when not given; ``--download DIR`` fetches CIFAR-10 first) and every
    setting left unset taken from its preset."""
    if args.download:
        download_cifar10(args.download)
        args.data_root = args.download
    if args.dataset is None:
        args.dataset = pick_dataset(args.data_root)
    for name, value in PRESETS.get(args.dataset, PRESETS["digits"]).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


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
    if files.visible_entries(out):
        if not force:
            raise BiLPError(f"{out} exists and is not empty: pass --force to replace it, or choose another --out")
        if not (out / MARKER).is_file():
            raise BiLPError(f"{out} is not a demo folder (no {MARKER}): --force replaces only demo folders; "
                            "choose another --out")


def prepare(out: Path, force: bool) -> None:
    """Empty the ``out`` this process holds; with ``force``, the previous demo there is removed."""
    check_out(out, force)
    for name in files.visible_entries(out):
        entry = out / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def run(args: DemoSettings) -> int:
    """The demo of the module docstring, in ``--out``, which this process holds while it runs."""
    check_ratio("--alpha", args.alpha)
    check_ratio("--beta", args.beta)
    out = Path(args.out)
    check_out(out, args.force)
    with files.hold(out, "--out"):
        return _run(args, out)


def _run(args: DemoSettings, out: Path) -> int:
    alphas, seeds = curve_alphas(args), hosts.parse_seeds(args.seeds)
    start = time.perf_counter()
    new = not files.visible_entries(out)
    prepare(out, args.force)
    files.write_json(out / MARKER, {"argv": sys.argv, **asdict(args)}, default=str)
    try:
        host = hosts.make_host(args, out)
    except BiLPError:
        if new:  # refused: leave nothing behind
            (out / MARKER).unlink()
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
    if result_curve is not None:
        print(verdict(by_name, result_curve, seeds, args.dataset))
        print()
    print(f"report: {report}")
    return 0


def seed_noise(by_name: dict[str, dict[str, Any]], groups: list[list[str]]) -> tuple[float | None, int]:
    """The std of one run's mean accuracy, pooled over ``groups`` of runs of one setting (different seeds), and
    its degrees of freedom."""
    dof = sum(len(g) - 1 for g in groups)
    if dof < 1:
        return None, 0
    squares = sum((len(g) - 1) * statistics.variance(statistics.fmean(by_name[n]["accuracy"]) for n in g)
                  for g in groups if len(g) > 1)
    return math.sqrt(squares / dof), dof


def verdict(by_name: dict[str, dict[str, Any]], result_curve: curve.Curve, seeds: list[int], dataset: str) -> str:
    """What the curve shows, in two plain sentences: where loss beats random selection beyond the seed-to-seed
    noise (or that it does not), and each criterion's max pruning ratio."""
    alphas = sorted(result_curve.accuracy["loss"])
    groups = [[curve.baseline_name(s) for s in seeds]] + [[curve.point_name(c, a, s) for s in seeds]
                                                          for c in curve.CRITERIA for a in alphas]
    sd, dof = seed_noise(by_name, groups)
    diffs = {a: 100 * (statistics.fmean(result_curve.accuracy["loss"][a])
                       - statistics.fmean(result_curve.accuracy["random"][a])) for a in alphas}
    span = ", ".join(f"{d:+.1f}" for d in diffs.values())
    at = "alpha " + ", ".join(f"{a:g}" for a in alphas)
    if sd is None:
        first = (f"Loss minus random at {at}: {span} points; one seed gives no noise estimate, so this does not say "
                 "whether pruning by loss beats random selection (pass --seeds 0,1 or more).")
    else:
        bar = curve.t975(dof) * 100 * sd * math.sqrt(2 / len(seeds))
        ahead = [a for a in alphas if diffs[a] > bar]
        behind = [a for a in alphas if diffs[a] < -bar]
        noise = f"(loss minus random at {at}: {span} points; noise: ±{bar:.1f})"
        if ahead and not behind:
            first = (f"Pruning by loss beat random selection of the same size beyond noise at alpha "
                     f"{', '.join(f'{a:g}' for a in ahead)} {noise}.")
        elif behind and not ahead:
            first = (f"Pruning by loss did worse than random selection of the same size at alpha "
                     f"{', '.join(f'{a:g}' for a in behind)} {noise}: here it does not pay.")
        elif not ahead:
            first = f"Pruning by loss did not beat random selection of the same size beyond noise {noise}."
        else:
            first = (f"Pruning by loss beat random selection at alpha {', '.join(f'{a:g}' for a in ahead)} and did "
                     f"worse at {', '.join(f'{a:g}' for a in behind)} {noise}.")
        if not ahead and dataset in ("digits", "mnist"):
            first += " The paper expects this on low-diversity sets such as digits and MNIST (Sec. 5.5)."
    best = result_curve.best
    second = (f"The largest pruning rate that keeps the accuracy within the baseline's std: loss {best['loss']:g}, "
              f"random {best['random']:g}.")
    return f"{first} {second}"


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
