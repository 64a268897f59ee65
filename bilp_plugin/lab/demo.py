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
* with ``--strata`` (default on): one run per loss decile S1..S10 at the first seed (the paper's Fig. 3).

Writes ``<out>/runs/<setting>-s<seed>/`` (record + ``result.json``), ``<out>/results.json``, ``<out>/results.md``
and ``<out>/report/`` (``bilp report`` on the runs); never into an existing demo folder without ``--force``.
Cost of the defaults: about 3 CPU-minutes in all (22 runs, two at a time).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.lab import hosts
from bilp_plugin.config import STRATA, check_ratio
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

MARKER = "demo.json"
SETTINGS = ("baseline", "level1", "level12", "random")


def points(args: argparse.Namespace) -> dict[str, list[hosts.Point]]:
    """The runs of each setting (and of each stratum) in run order."""
    seeds = hosts.parse_seeds(args.seeds)
    a, b = args.alpha, args.beta
    table = {
        "baseline": [hosts.Point(f"baseline-s{s}", seed=s) for s in seeds],
        "level1": [hosts.Point(f"level1-s{s}", alpha=a, seed=s) for s in seeds],
        "level12": [hosts.Point(f"level12-s{s}", alpha=a, beta=b, seed=s) for s in seeds],
        "random": [hosts.Point(f"random-s{s}", criterion="random", alpha=a, seed=s) for s in seeds],
    }
    if args.strata:
        for k in range(1, STRATA + 1):
            table[f"S{k}"] = [hosts.Point(f"stratum{k:02d}-s{seeds[0]}", criterion="stratum", stratum=k,
                                         seed=seeds[0])]
    return table


def label(setting: str, args: argparse.Namespace) -> str:
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


def run(args: argparse.Namespace) -> int:
    """The demo of the module docstring, for ``bilp demo``'s parsed options."""
    check_ratio("--alpha", args.alpha)
    check_ratio("--beta", args.beta)
    start = time.perf_counter()
    out = Path(args.out)
    check_out(out, args.force)
    new = not out.exists()
    prepare(out, args.force)
    files.write_json(out / MARKER, {"argv": sys.argv, **vars(args)}, default=str)
    try:
        host = hosts.make_host(args, out)
    except BiLPError:
        if new:  # refused: leave nothing behind
            shutil.rmtree(out)
        raise
    scores = hosts.score_file(args, out)
    table = points(args)
    say(f"demo: {sum(map(len, table.values()))} runs on the {host.name} host, {args.jobs} at a time")
    calls = [(p, out / "runs" / p.name, scores) for group in table.values() for p in group]
    done = iter(hosts.in_parallel(host.run, calls, args.jobs))
    results = {setting: [next(done) for _ in group] for setting, group in table.items()}
    rows = [{"setting": s, "label": label(s, args), **hosts.summary(results[s])} for s in SETTINGS]
    wall = time.perf_counter() - start
    markdown = table_markdown(rows, args, host.name, wall)
    files.write_text(out / "results.md", markdown)
    files.write_json(out / "results.json",
                     {"host": host.name, "args": vars(args), "wall_s": wall, "rows": rows,
                      "points": {s: [asdict(p) for p in g] for s, g in table.items()}, "results": results},
                     default=str)
    print(markdown)
    from bilp_plugin.lab.report import write_report

    report = write_report(sorted((out / "runs").iterdir()), out / "report")
    print(f"report: {report}")
    return 0


def table_markdown(rows: list[dict[str, Any]], args: argparse.Namespace, host: str, wall: float) -> str:
    """The comparison table (accuracy: mean +- std over every evaluated network of every seed)."""
    title = (f"BiLP demo: {args.method} on {args.dataset}, ipc {args.ipc}, {args.iterations} iterations, "
             f"{host} host; accuracy over {len(hosts.parse_seeds(args.seeds))} seed(s) x {args.eval_models} "
             "evaluation networks; time = mean seconds per run")
    lines = [title, "",
             "| setting | real kept | accuracy (%) | distill (s) | evaluate (s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['real_kept']}/{r['real_total']} | "
                     f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f} | {r['distill_s']:.1f} | "
                     f"{r['eval_s']:.1f} |")
    strata = " and the 10 strata runs" if args.strata else ""
    lines += ["", f"total wall time {wall:.0f} s (scoring, the runs above{strata}, {args.jobs} at a time)", ""]
    return "\n".join(lines)
