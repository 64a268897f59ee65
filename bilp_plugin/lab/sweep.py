"""``bilp sweep``: the maximum pruning ratio that keeps the distillation accuracy (the paper's Tables 1-2).

    bilp sweep --alphas 0.3,0.5,0.7,0.9 --seeds 0,1,2 --out bilp_sweep            # built-in DM on digits
    bilp sweep --host dc --dataset mnist --data-root $BILP_DATA --method DC --out sweep_dc

Runs the baseline (full real set) and every (criterion, alpha, seed) point, level 1 only (beta = 0), then
reports for each criterion (``loss``: keep the lowest-loss samples; ``random``: a random subset of the same size)
the largest alpha whose mean accuracy stays within the baseline's std: ``mean(alpha) >= mean(base) - std(base)``,
accuracies pooled over seeds and evaluated networks. Resumable: each finished point is stored as
``<out>/points/<name>.json`` and never rerun; a point interrupted midway is rerun from scratch. The settings that
define the points (host, method, dataset, sizes, scoring) are kept in ``<out>/sweep.json``; a rerun with other
settings is refused, with other alphas, seeds or criteria it only adds points.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.lab import hosts
from bilp_plugin.config import check_ratio
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

CRITERIA = ("loss", "random")
FIXED = ("method", "dataset", "ipc", "iterations", "batch_real", "width", "eval_models", "eval_epochs", "scores",
         "score_epochs")
"""The settings every point of one sweep shares (``sweep.json``)."""


def parse_alphas(text: str) -> list[float]:
    try:
        values = sorted({float(a) for a in text.split(",") if a.strip()})
    except ValueError:
        raise BiLPError(f"--alphas must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise BiLPError("--alphas names no value: pass e.g. --alphas 0.3,0.5,0.7")
    for a in values:
        check_ratio("--alphas", a)
    return [a for a in values if a > 0]


def parse_criteria(text: str) -> list[str]:
    values = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in values if c not in CRITERIA]
    if bad or not values:
        raise BiLPError(f"--criteria must name loss and/or random, got {text!r}")
    return values


def points(alphas: list[float], seeds: list[int], criteria: list[str]) -> list[hosts.Point]:
    """Baseline per seed, then each alpha (ascending), criterion and seed."""
    base = [hosts.Point(f"baseline-s{s}", seed=s) for s in seeds]
    return base + [hosts.Point(f"{c}-a{a:g}-s{s}", criterion=c, alpha=a, seed=s)
                   for a in alphas for c in criteria for s in seeds]


def _stored(file: Path, what: str) -> dict[str, Any]:
    """A JSON object the sweep wrote earlier; a damaged one is refused with the way out."""
    try:
        value = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        value = err
    if not isinstance(value, dict):
        raise BiLPError(f"{file} is damaged ({value}): delete it to {what}")
    return value


def check_settings(out: Path, args: argparse.Namespace, host: str) -> None:
    """Refuse when ``out`` holds a sweep of other settings (``sweep.json``), before anything is written."""
    settings = {"host": host, **{k: getattr(args, k) for k in FIXED}}
    file = out / "sweep.json"
    if file.is_file():
        old = _stored(file, "start the sweep afresh (its finished points stay in points/)")
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise BiLPError(f"{out} holds a sweep with other settings ({changes}): use the same settings to "
                            "resume it, or another --out")


def write_settings(out: Path, args: argparse.Namespace, host: str) -> None:
    file = out / "sweep.json"
    if not file.is_file():
        files.write_json(file, {"host": host, **{k: getattr(args, k) for k in FIXED}})


def run_point(host: hosts.Host, point: hosts.Point, out: Path, scores: Path) -> dict[str, Any]:
    """The point's stored result, or run it (an unfinished run folder is cleared first) and store it."""
    stored = out / "points" / f"{point.name}.json"
    if stored.is_file():
        result = _stored(stored, f"run point {point.name} again").get("result")
        if not isinstance(result, dict):
            raise BiLPError(f"{stored} holds no result: delete it to run point {point.name} again")
        return result
    run_dir = out / "runs" / point.name
    if run_dir.exists():
        say(f"sweep: {point.name} was interrupted; running it again")
        shutil.rmtree(run_dir)
    say(f"sweep: running {point.name}")
    result = host.run(point, run_dir, scores)
    files.write_json(stored, {"point": vars(point), "result": result})
    return result


def within(base: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a point's mean accuracy is at least the baseline's mean minus its std."""
    return bool(point["accuracy_mean"] >= base["accuracy_mean"] - base["accuracy_std"])


def max_alpha(base: dict[str, Any], by_alpha: dict[float, dict[str, Any]]) -> float:
    """The largest alpha within the baseline's std (0 if none)."""
    return max((a for a, s in by_alpha.items() if within(base, s)), default=0.0)


def run(args: argparse.Namespace) -> int:
    """The sweep of the module docstring, for ``bilp sweep``'s parsed options."""
    alphas, seeds = parse_alphas(args.alphas), hosts.parse_seeds(args.seeds)
    criteria = parse_criteria(args.criteria)
    out = files.check_folder(Path(args.out), "--out")
    host = hosts.make_host(args, out)
    check_settings(out, args, host.name)
    write_settings(out, args, host.name)
    scores = hosts.score_file(args, out)
    todo = points(alphas, seeds, criteria)
    results = dict(zip((p.name for p in todo),
                       hosts.in_parallel(run_point, [(host, p, out, scores) for p in todo], args.jobs)))
    base = hosts.summary([results[f"baseline-s{s}"] for s in seeds])
    table = {c: {a: hosts.summary([results[f"{c}-a{a:g}-s{s}"] for s in seeds]) for a in alphas}
             for c in criteria}
    best = {c: max_alpha(base, table[c]) for c in criteria}
    markdown = sweep_markdown(args, base, table, best, seeds)
    files.write_text(out / "sweep.md", markdown)
    files.write_json(out / "sweep-results.json",
                     {"baseline": base, "by_alpha": {c: {str(a): s for a, s in t.items()} for c, t in table.items()},
                      "max_alpha": best, "seeds": seeds})
    print(markdown)
    return 0


def sweep_markdown(args: argparse.Namespace, base: dict[str, Any], table: dict[str, dict[float, dict[str, Any]]],
                   best: dict[str, float], seeds: list[int]) -> str:
    floor = 100 * (base["accuracy_mean"] - base["accuracy_std"])
    criteria = list(table)
    title = (f"Max-pruning-ratio sweep: {args.method} on {args.dataset}, ipc {args.ipc}, {args.iterations} "
             f"iterations; accuracy (%) over seeds {','.join(map(str, seeds))} x {args.eval_models} networks")
    baseline = (f"baseline (full real set): {100 * base['accuracy_mean']:.1f} ± {100 * base['accuracy_std']:.1f}"
                f" (floor {floor:.1f}); '*' = within the baseline's std")
    lines = [title, "", baseline, "",
             "| alpha | " + " | ".join(criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
    for a in sorted(next(iter(table.values()))):
        cells = []
        for c in criteria:
            s = table[c][a]
            mark = "*" if within(base, s) else ""
            cells.append(f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}{mark}")
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    lines += ["", "max alpha within the baseline's std: "
              + ", ".join(f"{c} {best[c]:g}" for c in criteria), ""]
    return "\n".join(lines)
