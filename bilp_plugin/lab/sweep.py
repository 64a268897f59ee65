"""``bilp sweep``: the maximum pruning ratio that keeps the distillation accuracy (the paper's Tables 1-2).

    bilp sweep --alphas 0.3,0.5,0.7,0.9 --seeds 0,1,2 --out bilp_sweep            # built-in DM on digits
    bilp sweep --host dc --dataset mnist --data-root $BILP_DATA --method DC --out sweep_dc

Runs the baseline (full real set) and every (criterion, alpha, seed) point, level 1 only (beta = 0), then
reports for each criterion (``loss``: keep the lowest-loss samples; ``random``: a random subset of the same size)
the largest alpha whose mean accuracy stays within the baseline's std: ``mean(alpha) >= mean(base) - std(base)``,
accuracies pooled over seeds and evaluated networks (with the standard error of each mean over seeds,
:func:`bilp_plugin.lab.hosts.summary`). ``--strata 1,...,10`` adds, per seed, one run distilled from each named
loss decile alone (S1 = largest loss; the paper's Fig. 3). Resumable: each finished point is stored as
``<out>/points/<name>.json`` and never rerun; a point interrupted midway is rerun from scratch. The settings that
define the points (host, method, dataset, sizes, scoring) are kept in ``<out>/sweep.json``; a rerun with other
settings is refused, with other alphas, seeds, criteria or strata it only adds points.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from bilp_plugin.lab import hosts
from bilp_plugin.config import STRATA, check_ratio, check_stratum
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

CRITERIA = ("loss", "random")
FIXED = ("method", "dataset", "ipc", "iterations", "batch_real", "width", "model", "eval_models", "eval_epochs",
         "scores", "score_epochs")
"""The settings every point of one sweep shares (``sweep.json``)."""


def _alphas(text: str) -> list[float]:
    try:
        values = sorted({float(a) for a in text.split(",") if a.strip()})
    except ValueError:
        raise BiLPError(f"--alphas must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise BiLPError("--alphas names no value: pass e.g. --alphas 0.3,0.5,0.7")
    for a in values:
        check_ratio("--alphas", a)
    return [a for a in values if a > 0]


def _criteria(text: str) -> list[str]:
    values = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in values if c not in CRITERIA]
    if bad or not values:
        raise BiLPError(f"--criteria must name loss and/or random, got {text!r}")
    return values


def _strata(text: str) -> list[int]:
    try:
        values = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise BiLPError(f"--strata must be comma-separated integers in 1..{STRATA}, got {text!r}") from None
    for k in values:
        check_stratum(k)
    return values


def points(alphas: list[float], seeds: list[int], criteria: list[str], strata: list[int] | None = None
           ) -> list[hosts.Point]:
    """Baseline per seed, then each alpha (ascending), criterion and seed, then each stratum and seed."""
    base = [hosts.Point(f"baseline-s{s}", seed=s) for s in seeds]
    return base + [hosts.Point(f"{c}-a{a:g}-s{s}", criterion=c, alpha=a, seed=s)
                   for a in alphas for c in criteria for s in seeds] + [
        hosts.Point(f"stratum{k:02d}-s{s}", criterion="stratum", stratum=k, seed=s) for k in strata or []
        for s in seeds]


def sweep_points(args: argparse.Namespace) -> list[hosts.Point]:
    """The points ``bilp sweep``'s parsed options name (:func:`points`)."""
    return points(_alphas(args.alphas), hosts.parse_seeds(args.seeds), _criteria(args.criteria),
                  _strata(args.strata))


def check_settings(out: Path, args: argparse.Namespace, host: str) -> None:
    """Write ``sweep.json``, or refuse when the folder holds a sweep of other settings."""
    settings = {"host": host, **{k: getattr(args, k) for k in FIXED}}
    file = out / "sweep.json"
    if file.is_file():
        old = json.loads(file.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            changes = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise BiLPError(f"{out} holds a sweep with other settings ({changes}): use the same settings to "
                            "resume it, or another --out")
    else:
        file.write_text(json.dumps(settings, indent=1))


def run_point(host: hosts.Host, point: hosts.Point, out: Path, scores: Path) -> dict[str, Any]:
    """The point's stored result, or run it (an unfinished run folder is cleared first) and store it."""
    stored = out / "points" / f"{point.name}.json"
    if stored.is_file():
        return json.loads(stored.read_text())["result"]
    run_dir = out / "runs" / point.name
    if run_dir.exists():
        say(f"sweep: {point.name} was interrupted; running it again")
        shutil.rmtree(run_dir)
    say(f"sweep: running {point.name}")
    result = host.run(point, run_dir, scores)
    stored.parent.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_suffix(".tmp")
    tmp.write_text(json.dumps({"point": vars(point), "result": result}, indent=1))
    tmp.replace(stored)
    return result


def within(base: dict[str, Any], point: dict[str, Any]) -> bool:
    """Whether a point's mean accuracy is at least the baseline's mean minus its std."""
    return bool(point["accuracy_mean"] >= base["accuracy_mean"] - base["accuracy_std"])


def max_alpha(base: dict[str, Any], by_alpha: dict[float, dict[str, Any]]) -> float:
    """The largest alpha within the baseline's std (0 if none)."""
    return max((a for a, s in by_alpha.items() if within(base, s)), default=0.0)


def run(args: argparse.Namespace) -> int:
    """The sweep of the module docstring, for ``bilp sweep``'s parsed options."""
    alphas, seeds, criteria = _alphas(args.alphas), hosts.parse_seeds(args.seeds), _criteria(args.criteria)
    strata = _strata(args.strata)
    todo = sweep_points(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    host = hosts.make_host(args, out)
    check_settings(out, args, host.name)
    scores = hosts.score_file(args, out)
    results = dict(zip((p.name for p in todo),
                       hosts.in_parallel(run_point, [(host, p, out, scores) for p in todo], args.jobs)))
    base = hosts.summary([results[f"baseline-s{s}"] for s in seeds])
    table = {c: {a: hosts.summary([results[f"{c}-a{a:g}-s{s}"] for s in seeds]) for a in alphas}
             for c in criteria}
    by_stratum = {k: hosts.summary([results[f"stratum{k:02d}-s{s}"] for s in seeds]) for k in strata}
    best = {c: max_alpha(base, table[c]) for c in criteria}
    markdown = sweep_markdown(args, base, table, best, seeds, by_stratum)
    (out / "sweep.md").write_text(markdown)
    (out / "sweep-results.json").write_text(json.dumps(
        {"baseline": base, "by_alpha": {c: {str(a): s for a, s in t.items()} for c, t in table.items()},
         "by_stratum": {str(k): s for k, s in by_stratum.items()}, "max_alpha": best, "seeds": seeds}, indent=1))
    print(markdown)
    return 0


def _cell(s: dict[str, Any]) -> str:
    """Mean ± std (%), and the standard error of the mean when there is one."""
    se = f" (se {100 * s['accuracy_se']:.1f})" if s.get("accuracy_se") is not None else ""
    return f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}{se}"


def sweep_markdown(args: argparse.Namespace, base: dict[str, Any], table: dict[str, dict[float, dict[str, Any]]],
                   best: dict[str, float], seeds: list[int], by_stratum: dict[int, dict[str, Any]] | None = None
                   ) -> str:
    floor = 100 * (base["accuracy_mean"] - base["accuracy_std"])
    criteria = list(table)
    title = (f"Max-pruning-ratio sweep: {args.method} on {args.dataset}, ipc {args.ipc}, {args.iterations} "
             f"iterations; accuracy (%) over seeds {','.join(map(str, seeds))} x {args.eval_models} networks")
    baseline = (f"baseline (full real set): {_cell(base)} (floor {floor:.1f}); '*' = within the baseline's std; "
                "se = standard error of the mean over seeds")
    lines = [title, "", baseline, "",
             "| alpha | " + " | ".join(criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
    for a in sorted(next(iter(table.values()))):
        cells = []
        for c in criteria:
            s = table[c][a]
            mark = "*" if within(base, s) else ""
            cells.append(f"{_cell(s)}{mark}")
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    lines += ["", "max alpha within the baseline's std: "
              + ", ".join(f"{c} {best[c]:g}" for c in criteria), ""]
    if by_stratum:
        lines += ["| loss stratum (S1 = largest loss) | accuracy (%) |", "|---|---|"]
        lines += [f"| S{k} | {_cell(s)} |" for k, s in sorted(by_stratum.items())] + [""]
    return "\n".join(lines)
