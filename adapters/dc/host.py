"""``--host dc``: run demo and sweep points on the patched DatasetCondensation (``main_DM.py`` for DM,
``main.py --method DC`` for DC) instead of the built-in host.

The patched files are written once into ``<workdir>/upstream-dc/`` from the submodule's git objects (the pinned
commit plus ``patches/dc``; the submodule checkout itself is never touched), and each point runs there as::

    bilp launch --seed SEED --threads T <workdir>/upstream-dc/main_DM.py -- --dataset MNIST \\
        --ipc 1 --Iteration N --num_exp 1 --num_eval E --eval_mode end ... --bilp ... --bilp-out RUN_DIR

The upstream evaluates its synthetic set once at the end (``--eval_mode end``: ``E`` fresh networks of the
distillation's ``--model``, ``ConvNet`` unless the options name another, e.g. ``ConvNetW32``) and saves
``res_<method>_<dataset>_<model>_<ipc>ipc.pt``; its accuracies become ``RUN_DIR/result.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import git
import numpy as np
import torch

from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.hosts import Point
from bilp_plugin.runtime.record import write_result
from bilp_plugin.tools import apply

DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR10"}
"""Our dataset names -> DatasetCondensation's ``--dataset`` (the two whose layouts ``BILP_DATA`` holds)."""
TREE = "upstream-dc"
MODEL = "ConvNet"
"""The upstream's default network (ConvNet-3, width 128, instance norm)."""
ADAPTER = Path(__file__).resolve().parent
"""This adapter's folder (its ``manifest.toml``; ``patches/`` and ``third_party/`` are two levels up)."""


def unavailable(dataset: str, root: Path | None = None) -> str | None:
    """Why ``--host dc`` cannot run here (``None`` when it can): the dataset, the adapter, the submodule, the
    patch series."""
    if dataset not in DATASETS:
        return (f"DatasetCondensation does not load {dataset!r}: pass --dataset {' or '.join(DATASETS)} "
                "with --data-root")
    folder = root / "adapters" / "dc" if root else ADAPTER
    if not (folder / "plugin.py").is_file():
        return f"{folder} has no plugin.py (the dc adapter is not installed)"
    manifest = apply.Manifest.load(folder)
    if not manifest.patches:
        return "adapters/dc/manifest.toml lists no patches"
    row = apply.status_row(manifest)
    if row["commit"] == "not initialised":
        return f"submodule {manifest.path} is not initialised: run `git submodule update --init {manifest.path}`"
    if row["pinned"] != "yes":
        return f"{manifest.path} is at {row['commit']}, not the pinned {manifest.commit[:12]}"
    try:
        with git.Repo(manifest.checkout) as repo:
            apply.patched_tree(repo, manifest)
    except BiLPError as err:
        return str(err).splitlines()[0]
    return None


def materialise(dest: Path, root: Path | None = None) -> Path:
    """The patched upstream's files under ``dest`` (written once; an existing copy of the same tree is reused)."""
    manifest = apply.Manifest.load(root / "adapters" / "dc" if root else ADAPTER)
    with git.Repo(manifest.checkout) as repo:
        tree = apply.patched_tree(repo, manifest)
        marker = dest / ".bilp-tree"
        if not (marker.is_file() and marker.read_text() == tree):
            apply.export_tree(repo, tree, dest)
            marker.write_text(tree)
    return dest


class DcHost:
    """Runs points as launches of the patched upstream (one process per point)."""

    name = "dc"

    def __init__(self, args: argparse.Namespace, workdir: Path, root: Path | None = None,
                 python: str = sys.executable) -> None:
        from bilp_plugin.lab.datasets import load_dataset

        self.args = args
        self.python = python
        self.tree = materialise((workdir / TREE).resolve(), root)
        self.n_real = len(load_dataset(args.dataset, args.data_root))

    def command(self, point: Point, run_dir: Path, scores: Path) -> list[str]:
        a = self.args
        from bilp_plugin.lab.datasets import data_root

        script = "main_DM.py" if a.method == "DM" else "main.py"
        launcher = ["--seed", str(point.seed), "--threads", str(a.threads)]
        if a.dataset == "cifar10":
            launcher.append("--skip-cifar-integrity")
        upstream = ["--dataset", DATASETS[a.dataset], "--model", model(a), "--ipc", str(a.ipc),
                    "--Iteration", str(a.iterations), "--batch_real", str(a.batch_real), "--num_exp", "1",
                    "--num_eval", str(a.eval_models), "--epoch_eval_train", str(a.eval_epochs),
                    "--eval_mode", "end", "--data_path", str(data_root(a.data_root)),
                    "--save_path", str(run_dir / "upstream")]
        if a.method == "DC":
            upstream += ["--method", "DC"]
        return [self.python, "-m", "bilp_plugin", "launch", *launcher, str(self.tree / script), "--", *upstream,
                *point.bilp_flags(scores), "--bilp-out", str(run_dir)]

    def run(self, point: Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        run_dir, scores = run_dir.resolve(), scores.resolve()  # the upstream runs in run_dir/upstream
        cmd = self.command(point, run_dir, scores)
        (run_dir / "upstream").mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, check=False, cwd=run_dir / "upstream", capture_output=True, text=True)
        (run_dir / "upstream" / "log.txt").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise BiLPError(f"the patched upstream failed ({proc.returncode}); its log is "
                            f"{run_dir / 'upstream' / 'log.txt'}:\n{proc.stderr[-2000:]}")
        result = parse_result(run_dir, self.args, point, self.n_real, time.perf_counter() - start)
        write_result(run_dir, result)
        return result


def model(args: argparse.Namespace) -> str:
    """The upstream network the options name (``--model``), else the upstream's default."""
    return getattr(args, "model", None) or MODEL


def eval_epochs(args: argparse.Namespace) -> int:
    """What the upstream trains its evaluation networks for: ``main.py`` (DC) forces 1000 epochs when it
    augments (MNIST) and 300 otherwise, ignoring ``--epoch_eval_train``; ``main_DM.py`` honours it."""
    if args.method == "DC":
        return 1000 if args.dataset == "mnist" else 300
    return int(args.eval_epochs)


def parse_result(run_dir: Path, args: argparse.Namespace, point: Point, n_real: int, seconds: float
                 ) -> dict[str, Any]:
    """The upstream's saved accuracies as a ``result.json`` dict. ``distill_s`` is the record's matching-loop
    time (first to last real draw), ``eval_s`` the rest of the launch (data loading, evaluation)."""
    net = model(args)
    file = run_dir / "upstream" / f"res_{args.method}_{DATASETS[args.dataset]}_{net}_{args.ipc}ipc.pt"
    if not file.is_file():
        raise BiLPError(f"the upstream wrote no {file.name} in {file.parent}: see its log.txt there")
    accs = [float(a) for a in torch.load(file, weights_only=False)["accs_all_exps"][net]]
    level1 = run_dir / "level1.json"
    kept = json.loads(level1.read_text())["kept"] if level1.is_file() else n_real
    distill = json.loads((run_dir / "summary.json").read_text()).get("matching_loop_s") or 0.0
    return {
        "host": "dc", "method": args.method, "dataset": args.dataset, "ipc": args.ipc,
        "iterations": args.iterations, "seed": point.seed, "real_total": n_real, "real_kept": kept,
        "accuracy": accs, "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
        "distill_s": distill, "eval_s": seconds - distill, "wall_s": seconds,
        "eval": {"models": args.eval_models, "epochs": eval_epochs(args), "model": f"{net} (upstream)"},
    }
