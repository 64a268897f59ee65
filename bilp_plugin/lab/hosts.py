"""What ``bilp demo``, ``bilp sweep`` and ``bilp ablate`` share: the host that runs their points (a
:class:`~bilp_plugin.hosting.Host` from the ``make_host`` hook of the adapter ``--host`` names: the built-in host
in-process, or a patched upstream launched by :mod:`bilp_plugin.lab.launched`), the level-1 score file, and the
summary of a group of runs. :mod:`bilp_plugin.lab.resumable` runs the points (:class:`~bilp_plugin.hosting.Point`).

Each point runs with ``--bilp`` and writes a run record (``config.json``, ``level1.json``, ... by
:mod:`bilp_plugin.runtime.record`) plus ``result.json`` (accuracy per evaluated network, distillation seconds) into
its own folder; the baseline is ``--bilp`` with alpha = 0 and beta = 0, which changes nothing but the record.
"""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bilp_plugin.config import ScoringConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import Host, HostSettings, Point
from bilp_plugin.lab import host
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.lab.progress import PointProgress
from bilp_plugin.logs import say
from bilp_plugin.manager import get_manager
from bilp_plugin.method import scorefile

METHODS = ("DC", "DSA", "DM")
"""What ``--method`` names: DatasetCondensation's three (the built-in host runs DC and DM; IDC and IDM hosts run
their own method and ignore it)."""

@dataclass(frozen=True)
class LabSettings(HostSettings):
    """What ``bilp demo``, ``bilp sweep`` and ``bilp ablate`` share beyond the host's settings: the seeds (text,
    :func:`parse_seeds`), the level-1 score file or how to score, the runs in parallel. Each command's own settings
    extend it (built by the command from its parsed options: :meth:`HostSettings.from_options`)."""

    seeds: str = "0"
    scores: str | None = None
    score_epochs: int = 10
    jobs: int = 1


def method_of(host: Host, options: HostSettings) -> str:
    """The method a host distills with: its own (``IDC``, ``IDM``) where it has one, else ``--method``."""
    return str(getattr(host, "method", options.method))


def parse_seeds(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BiLPError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BiLPError("--seeds names no seed: pass e.g. --seeds 0,1,2")
    return values


def upstream_args(options: HostSettings) -> list[str]:
    """``--upstream-args``: the host's own arguments, appended after those the command sets (so they win)."""
    text = options.upstream_args or ""
    try:
        return shlex.split(text)
    except ValueError as err:
        raise BiLPError(f"--upstream-args {text!r} does not parse as a command line ({err}): quote it as a shell "
                        "would") from None


class BuiltinHost:
    """Runs points in this process through :mod:`bilp_plugin.lab.host` (the same argv a user would type)."""

    name = "builtin"

    def __init__(self, args: HostSettings) -> None:
        if args.method not in host.METHODS:
            raise BiLPError(f"the built-in host runs --method {' or '.join(host.METHODS)}, not {args.method}: "
                            "pass --host dc for the patched DatasetCondensation")
        if args.model:
            raise BiLPError(f"--model {args.model} names an upstream's network; the built-in host's ConvNet is "
                            "set by --width: drop --model, or pass --host dc")
        self.base = ["--method", args.method, "--dataset", args.dataset, "--ipc", str(args.ipc),
                     "--iterations", str(args.iterations), "--batch-real", str(args.batch_real),
                     "--width", str(args.width), "--eval-models", str(args.eval_models),
                     "--eval-epochs", str(args.eval_epochs), "--threads", str(args.threads),
                     "--device", args.device]
        if args.data_root:
            self.base += ["--data-root", str(args.data_root)]
        self.base += upstream_args(args)

    def argv(self, point: Point, run_dir: Path, scores: Path) -> list[str]:
        return [*self.base, "--seed", str(point.seed), *point.bilp_flags(scores), "--bilp-out", str(run_dir)]

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        return host.run(host.parse(self.argv(point, run_dir, scores)), PointProgress(point.name).step)


def make_host(options: HostSettings, workdir: Path) -> Host:
    """The host ``--host`` names, from its adapter's ``make_host`` hook (the call reaches that adapter only);
    ``auto`` tries ``dc`` and falls back to the built-in host, with a line saying why."""
    settings = HostSettings.from_options(options)
    name = settings.host
    if name == "auto":
        try:
            return get_manager().run_hooks("dc").make_host(settings, workdir)
        except BiLPError as err:
            say(f"using the built-in host: {err}")
            name = "builtin"
    return get_manager().run_hooks(name).make_host(settings, workdir)


def score_file(args: LabSettings, out: Path) -> Path:
    """The level-1 score file: ``--scores``, else ``out/scores.npz`` scored through the ``score_samples`` hook
    (empirical loss of a ConvNet of ``--width``, ``--score-epochs`` epochs, seed 0)."""
    if args.scores:
        return Path(args.scores).resolve()
    path = out / "scores.npz"
    if path.exists():
        scorefile.load(path)  # a damaged one is refused here, not in every run
        return path.resolve()
    dataset = load_dataset(args.dataset, args.data_root)
    torch.set_num_threads(max(1, args.jobs * args.threads))  # scoring has the machine to itself
    config = ScoringConfig(model_width=args.width, epochs=args.score_epochs, device=args.device, progress=False)
    say(f"scoring {dataset.name} ({len(dataset)} samples, {args.score_epochs} epochs)")
    scorefile.save(path, get_manager().score_samples(dataset, config))
    return path.resolve()


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of the accuracy over every evaluated network of every seed; mean seconds per run; the share
    of real rows level 2 kept (pooled over the runs) and the mean ITE share of the distillation (ITE seconds over
    ``distill_s``), from the ``record`` totals :mod:`bilp_plugin.lab.resumable` attaches (``None`` without
    level 2).

    ``accuracy_se``, the standard error of that mean, counts runs, not networks: the networks of one run share its
    synthetic set, so they are not independent. It is the sample std of the per-run mean accuracies over
    sqrt(runs) (``None`` for a single run)."""
    accs = [a for r in results for a in r["accuracy"]]
    run_means = [statistics.fmean(r["accuracy"]) for r in results]
    se = statistics.stdev(run_means) / len(run_means) ** 0.5 if len(run_means) > 1 else None
    with_level2 = [r for r in results if (r.get("record") or {}).get("rows")]
    records = [r["record"] for r in with_level2]
    shares = [r["record"]["ite_s"] / r["distill_s"] for r in with_level2 if r["distill_s"]]
    return {"runs": len(results), "real_kept": results[0]["real_kept"], "real_total": results[0]["real_total"],
            "accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs),
            "accuracy_se": se, "run_means": run_means,
            "distill_s": statistics.fmean(r["distill_s"] for r in results),
            "eval_s": statistics.fmean(r["eval_s"] for r in results),
            "level2_kept": sum(r["kept_rows"] for r in records) / sum(r["rows"] for r in records) if records else None,
            "ite_share": statistics.fmean(shares) if shares else None}
