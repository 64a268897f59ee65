"""Flags that several commands share, each defined once here."""

from __future__ import annotations

import argparse
import os

from bilp_plugin.lab.datasets import DATASETS
from bilp_plugin.lab.host import METHODS
from bilp_plugin.manager import adapter_entry_points


def add_data_flags(p: argparse.ArgumentParser, required: bool, default: str | None = None) -> None:
    """``--dataset`` and ``--data-root``."""
    p.add_argument("--dataset", choices=DATASETS, required=required, default=default,
                   help="dataset name (digits ships with scikit-learn; the others read --data-root)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the torchvision layouts (default: $BILP_DATA)")


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_host_flags(p: argparse.ArgumentParser, iterations: int, seeds: str) -> None:
    """The distillation setting of ``bilp demo``, ``bilp sweep`` and ``bilp ablate``: host, method, data, sizes,
    evaluation, seeds, level-1 scores, parallelism."""
    p.add_argument("--host", choices=("auto", *adapter_entry_points()), default="auto",
                   help="builtin: the compact built-in DC/DM loop; an adapter name: that patched upstream (needs its "
                        "submodule and patches; dc runs --dataset mnist or cifar10); auto: dc when it can run, else "
                        "builtin")
    p.add_argument("--method", choices=METHODS, default="DM", help="distribution or gradient matching")
    add_data_flags(p, required=False, default="digits")
    p.add_argument("--ipc", type=int, default=1, help="synthetic images per class")
    p.add_argument("--iterations", type=int, default=iterations, help="updates of the synthetic set")
    p.add_argument("--batch-real", type=int, default=64, help="real batch per class and matching step")
    p.add_argument("--width", type=int, default=32, help="ConvNet width (built-in host and scoring)")
    p.add_argument("--model", default=None,
                   help="the upstream's network (dc: its --model, e.g. ConvNetW32; default ConvNet, width 128); the "
                        "built-in host takes --width instead")
    p.add_argument("--eval-models", type=int, default=3, help="fresh networks trained on each synthetic set")
    p.add_argument("--eval-epochs", type=int, default=150, help="their training epochs")
    p.add_argument("--seeds", default=seeds, help="comma-separated distillation seeds")
    p.add_argument("--scores", default=None, help="level-1 score file to use instead of scoring the dataset")
    p.add_argument("--score-epochs", type=int, default=10, help="epochs of empirical-loss scoring")
    p.add_argument("--device", default="cpu", help="device of the built-in host and of scoring (dc picks its own)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="runs in parallel (processes; default: min(2, CPUs))")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
