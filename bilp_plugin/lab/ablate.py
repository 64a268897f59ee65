"""``bilp ablate``: the paper's Table 5 on a host: which of BiLP's pruning criteria carries the accuracy.

    bilp ablate --host dc --dataset mnist --data-root $BILP_DATA --method DM --seeds 0,1,2 --out ablate_dm

Five settings, each over ``--seeds`` (every run with ``--bilp``, so each writes its run record):

========  =========================================  ==============================================
setting   BiLP                                       flags
========  =========================================  ==============================================
none      no pruning (the full real set)             ``--bilp-alpha 0 --bilp-beta 0``
level1    level 1 only                               ``--bilp-alpha A``
small     level 1 + prune the small-ITE tail          ``--bilp-alpha A --bilp-beta B --bilp-side small``
large     level 1 + prune the large-ITE tail          ``--bilp-alpha A --bilp-beta B --bilp-side large``
both      level 1 + prune both tails (full BiLP)     ``--bilp-alpha A --bilp-beta B``
========  =========================================  ==============================================

The table: accuracy (mean ± std over every evaluated network of every seed), the real rows level 1 kept, the
share of the drawn real rows level 2 kept (pooled over the seeds' records) and the ITE's share of the
distillation (the record's ITE seconds over the point's ``distill_s``, mean over the seeds). Resumable like the
sweep (:mod:`bilp_plugin.lab.resumable`; settings in ``<out>/ablate.json``, which include alpha and beta). Writes
``ablate.md`` and ``ablate-results.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bilp_plugin import files
from bilp_plugin.config import check_ratio
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import hosts
from bilp_plugin.lab.resumable import PointRunner, check_budget, check_settings

SETTINGS = {
    "none": ("no pruning", "✗", "✗", "✗"),
    "level1": ("level 1 only", "✓", "✗", "✗"),
    "small": ("level 1 + prune small ITE", "✓", "✓", "✗"),
    "large": ("level 1 + prune large ITE", "✓", "✗", "✓"),
    "both": ("level 1 + prune both (BiLP)", "✓", "✓", "✓"),
}
"""Setting -> label, then whether it prunes by loss (level 1), the small-ITE tail, the large-ITE tail."""
FIXED = ("method", "dataset", "ipc", "iterations", "batch_real", "width", "eval_models", "eval_epochs", "scores",
         "score_epochs", "upstream_args", "alpha", "beta")
"""The settings every point of one ablation shares (``ablate.json``)."""


@dataclass(frozen=True)
class AblateSettings(hosts.LabSettings):
    """``bilp ablate``'s settings: the shared ones, level 1's alpha and level 2's beta, the folder, the budget."""

    alpha: float = 0.5
    beta: float = 0.2
    out: str = "bilp_ablate"
    budget: float | None = None


def points(alpha: float, beta: float, seeds: list[int]) -> dict[str, list[hosts.Point]]:
    """The runs of each setting."""
    return {
        "none": [hosts.Point(f"none-s{s}", seed=s) for s in seeds],
        "level1": [hosts.Point(f"level1-s{s}", alpha=alpha, seed=s) for s in seeds],
        "small": [hosts.Point(f"small-s{s}", alpha=alpha, beta=beta, side="small", seed=s) for s in seeds],
        "large": [hosts.Point(f"large-s{s}", alpha=alpha, beta=beta, side="large", seed=s) for s in seeds],
        "both": [hosts.Point(f"both-s{s}", alpha=alpha, beta=beta, seed=s) for s in seeds],
    }


def run(args: AblateSettings) -> int:
    """The ablation of the module docstring."""
    started = time.perf_counter()
    check_budget(args.budget)
    check_ratio("--alpha", args.alpha)
    check_ratio("--beta", args.beta)
    if args.alpha == 0 or args.beta == 0:
        raise BiLPError(f"--alpha and --beta must be > 0 (the settings compare pruning with none), got "
                        f"{args.alpha:g} and {args.beta:g}")
    seeds = hosts.parse_seeds(args.seeds)
    out = files.check_folder(Path(args.out), "--out")
    host = hosts.make_host(args, out)  # a host that cannot run here refuses before anything is written
    out.mkdir(parents=True, exist_ok=True)
    check_settings(out, "ablate.json", {"host": host.name, **{k: asdict(args)[k] for k in FIXED}})
    scores = hosts.score_file(args, out)
    table = points(args.alpha, args.beta, seeds)
    todo = [p for group in table.values() for p in group]
    runner = PointRunner(host, out, scores, "ablate", args.jobs, args.budget, started)
    results = runner.run(todo)
    if runner.missing(todo):
        return runner.stopped(todo)
    rows = [{"setting": s, **hosts.summary([results[p.name] for p in group])} for s, group in table.items()]
    markdown = table_markdown(rows, args, host, seeds)
    files.write_text(out / "ablate.md", markdown)
    files.write_json(out / "ablate-results.json",
                     {"host": host.name, "settings": {k: asdict(args)[k] for k in FIXED}, "seeds": seeds,
                      "rows": rows}, default=str)
    print(markdown)
    return 0


def _share(value: float | None) -> str:
    return f"{100 * value:.1f}%" if value is not None else "-"


def table_markdown(rows: list[dict[str, Any]], args: AblateSettings, host: hosts.Host, seeds: list[int]
                   ) -> str:
    """Table 5 as Markdown: one row per setting."""
    title = (f"Table 5 ablation: {hosts.method_of(host, args)} on {args.dataset}, ipc {args.ipc}, {args.iterations} "
             f"iterations, {host.name} host, alpha {args.alpha:g}, beta {args.beta:g}; accuracy (%) over seeds "
             f"{','.join(map(str, seeds))} x {args.eval_models} networks")
    lines = [title, "",
             "| setting | level 1 | prune small ITE | prune large ITE | accuracy (%) | real kept (level 1) | "
             "kept by level 2 | ITE share |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        label, loss, small, large = SETTINGS[r["setting"]]
        lines.append(f"| {label} | {loss} | {small} | {large} | {100 * r['accuracy_mean']:.1f} ± "
                     f"{100 * r['accuracy_std']:.1f} | {r['real_kept']}/{r['real_total']} | "
                     f"{_share(r['level2_kept'])} | {_share(r['ite_share'])} |")
    lines += ["", "kept by level 2: kept rows / drawn rows over the selections of every seed's record; ITE share: ITE "
              "seconds / distillation seconds (the matching loop, less an evaluation inside it), mean over the seeds",
              ""]
    return "\n".join(lines)
