"""What ``bilp demo`` and ``bilp sweep`` share: the distillation settings they run (:class:`Point`), the host that
runs them (the built-in host in-process, or the patched DatasetCondensation through ``bilp_plugin.launch``), the
level-1 score file, and the summary of a group of runs.

Each point runs with ``--bilp`` and writes a run record (``config.json``, ``level1.json``, ... by
:mod:`bilp_plugin.record`) plus ``result.json`` (accuracy per evaluated network, distillation seconds) into its
own folder; the baseline is ``--bilp`` with alpha = 0 and beta = 0, which changes nothing but the record.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from bilp_plugin import host as builtin_host
from bilp_plugin import scores as score_io
from bilp_plugin.config import ScoringConfig
from bilp_plugin.datasets import DATASETS, load_dataset
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say

HOSTS = ("auto", "builtin", "dc")


@dataclass(frozen=True)
class Point:
    """One distillation run: level-1 criterion and alpha (stratum K for ``stratum``), level-2 beta, seed."""

    name: str
    criterion: str = "loss"
    alpha: float = 0.0
    beta: float = 0.0
    seed: int = 0
    stratum: int | None = None

    def bilp_flags(self, scores: Path) -> list[str]:
        flags = ["--bilp", "--bilp-criterion", self.criterion, "--bilp-alpha", str(self.alpha),
                 "--bilp-beta", str(self.beta), "--bilp-seed", str(self.seed)]
        if self.stratum is not None:
            flags += ["--bilp-stratum", str(self.stratum)]
        if self.criterion != "random":
            flags += ["--bilp-scores", str(scores)]
        return flags


class Host(Protocol):
    name: str

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        """Distill and evaluate ``point``; its record and ``result.json`` go to ``run_dir``. Returns the result."""
        ...


def add_host_flags(p: argparse.ArgumentParser, iterations: int, seeds: str) -> None:
    """The flags of the distillation setting shared by ``bilp demo`` and ``bilp sweep``."""
    p.add_argument("--host", choices=HOSTS, default="auto",
                   help="builtin: the compact built-in DC/DM loop; dc: the patched DatasetCondensation (needs its "
                        "submodule and patches, and --dataset mnist or cifar10); auto: dc when it can run, else "
                        "builtin")
    p.add_argument("--method", choices=builtin_host.METHODS, default="DM", help="distribution or gradient matching")
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="digits ships with scikit-learn; the others read --data-root")
    p.add_argument("--data-root", default=None, help="folder with the torchvision layouts (default: $BILP_DATA)")
    p.add_argument("--ipc", type=int, default=1, help="synthetic images per class")
    p.add_argument("--iterations", type=int, default=iterations, help="updates of the synthetic set")
    p.add_argument("--batch-real", type=int, default=64, help="real batch per class and matching step")
    p.add_argument("--width", type=int, default=32, help="ConvNet width (built-in host and scoring)")
    p.add_argument("--eval-models", type=int, default=3, help="fresh networks trained on each synthetic set")
    p.add_argument("--eval-epochs", type=int, default=150, help="their training epochs")
    p.add_argument("--seeds", default=seeds, help="comma-separated distillation seeds")
    p.add_argument("--scores", default=None, help="level-1 score file to use instead of scoring the dataset")
    p.add_argument("--score-epochs", type=int, default=10, help="epochs of empirical-loss scoring")
    p.add_argument("--device", default="cpu", help="device of the built-in host and of scoring (dc picks its own)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs in parallel (processes; default: min(2, CPUs))")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")


def parse_seeds(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise BiLPError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BiLPError("--seeds names no seed: pass e.g. --seeds 0,1,2")
    return values


class BuiltinHost:
    """Runs points in this process through :mod:`bilp_plugin.host` (the same argv a user would type)."""

    name = "builtin"

    def __init__(self, args: argparse.Namespace) -> None:
        self.base = ["--method", args.method, "--dataset", args.dataset, "--ipc", str(args.ipc),
                     "--iterations", str(args.iterations), "--batch-real", str(args.batch_real),
                     "--width", str(args.width), "--eval-models", str(args.eval_models),
                     "--eval-epochs", str(args.eval_epochs), "--threads", str(args.threads),
                     "--device", args.device]
        if args.data_root:
            self.base += ["--data-root", str(args.data_root)]

    def argv(self, point: Point, run_dir: Path, scores: Path) -> list[str]:
        return [*self.base, "--seed", str(point.seed), *point.bilp_flags(scores), "--bilp-out", str(run_dir)]

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        return builtin_host.run(builtin_host.parse(self.argv(point, run_dir, scores)))


def make_host(args: argparse.Namespace, workdir: Path) -> Host:
    """The host ``--host`` asks for; ``auto`` falls back to the built-in one, with a log line saying why."""
    from bilp_plugin import upstream_dc

    if args.host == "builtin":
        return BuiltinHost(args)
    reason = upstream_dc.unavailable(args.dataset)
    if reason is None:
        return upstream_dc.DcHost(args, workdir)
    if args.host == "dc":
        raise BiLPError(f"--host dc cannot run: {reason}")
    say(f"using the built-in host: {reason}")
    return BuiltinHost(args)


def score_file(args: argparse.Namespace, out: Path) -> Path:
    """The level-1 score file: ``--scores``, else ``out/scores.npz`` scored through the ``score_samples`` hook
    (empirical loss of a ConvNet of ``--width``, ``--score-epochs`` epochs, seed 0)."""
    if args.scores:
        return Path(args.scores).resolve()
    from bilp_plugin.manager import get_manager

    path = out / "scores.npz"
    if path.exists():
        return path.resolve()
    dataset = load_dataset(args.dataset, args.data_root)
    torch.set_num_threads(max(1, args.jobs * args.threads))  # scoring has the machine to itself
    config = ScoringConfig(model_width=args.width, epochs=args.score_epochs, device=args.device, progress=False)
    say(f"scoring {dataset.name} ({len(dataset)} samples, {args.score_epochs} epochs)")
    score_io.save(path, get_manager().score_samples(dataset, config))
    return path.resolve()


def in_parallel(task: Callable[..., Any], calls: list[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``[task(*c) for c in calls]``, in ``jobs`` spawned processes when ``jobs`` > 1 (results in call order)."""
    if jobs <= 1 or len(calls) <= 1:
        return [task(*c) for c in calls]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(jobs, len(calls)), mp_context=context) as pool:
        futures = [pool.submit(task, *c) for c in calls]
        return [f.result() for f in futures]


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std of the accuracy over every evaluated network of every seed; mean seconds per run."""
    accs = [a for r in results for a in r["accuracy"]]
    return {"runs": len(results), "real_kept": results[0]["real_kept"], "real_total": results[0]["real_total"],
            "accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.pstdev(accs),
            "distill_s": statistics.fmean(r["distill_s"] for r in results),
            "eval_s": statistics.fmean(r["eval_s"] for r in results)}


def load_result(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / builtin_host.RESULT
    return json.loads(path.read_text()) if path.is_file() else None
