"""Flags that several commands share, each defined once here, with their argparse types (each value is checked
when the command line is parsed) and the checks of the flags together (:func:`check_host_flags`), run before any
file is written or any work begins."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

from bilp_plugin.config import ScoringConfig, argtype, check_seed, count_type
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import hosts
from bilp_plugin.lab.datasets import DATASETS, load_dataset
from bilp_plugin.lab.hosts import METHODS
from bilp_plugin.manager import adapter_entry_points
from bilp_plugin.method import scorefile
from bilp_plugin.method.empirical_loss import check_config


def file_name(text: str) -> str:
    """A path that names something (argparse type)."""
    if not text.strip():
        raise BiLPError("an empty path names no file: pass a file name")
    return text


def seed_list(text: str) -> str:
    """Comma-separated seeds (argparse type; the text is kept, :func:`hosts.parse_seeds` reads it)."""
    for seed in hosts.parse_seeds(text):
        check_seed("--seeds", seed)
    return text


def listed(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse type that checks a comma-separated list with ``parse`` and keeps its text."""
    return argtype(lambda text: (parse(text), text)[1])


def seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type)."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise BiLPError(f"--budget {text}: pass a positive number of seconds")
    return value


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
    p.add_argument("--method", choices=METHODS, default="DM",
                   help="DM (distribution matching), DC (gradient matching) or DSA (DC with Siamese augmentation; dc "
                        "host only); the idc and idm hosts run their own method")
    add_data_flags(p, required=False, default="digits")
    p.add_argument("--ipc", type=count_type("--ipc"), default=1, help="synthetic images per class")
    p.add_argument("--iterations", type=count_type("--iterations", 0), default=iterations,
                   help="updates of the synthetic set")
    p.add_argument("--batch-real", type=count_type("--batch-real"), default=64,
                   help="real batch per class and matching step")
    p.add_argument("--width", type=count_type("--width"), default=32, help="ConvNet width (built-in host and scoring)")
    p.add_argument("--model", default=None,
                   help="the upstream's network (dc: its --model, e.g. ConvNetW32; default ConvNet, width 128); the "
                        "built-in host takes --width instead")
    p.add_argument("--eval-models", type=count_type("--eval-models"), default=3,
                   help="fresh networks trained on each synthetic set")
    p.add_argument("--eval-epochs", type=count_type("--eval-epochs"), default=150, help="their training epochs")
    p.add_argument("--seeds", type=argtype(seed_list), default=seeds, help="comma-separated distillation seeds")
    p.add_argument("--scores", type=argtype(file_name), default=None,
                   help="level-1 score file to use instead of scoring the dataset")
    p.add_argument("--score-epochs", type=count_type("--score-epochs"), default=10,
                   help="epochs of empirical-loss scoring")
    p.add_argument("--device", default="cpu", help="device of the built-in host and of scoring (dc picks its own)")
    p.add_argument("--jobs", type=count_type("--jobs"), default=min(2, os.cpu_count() or 1),
                   help="runs in parallel (processes; default: min(2, CPUs))")
    p.add_argument("--threads", type=count_type("--threads"), default=1, help="torch threads per run")
    p.add_argument("--upstream-args", default=None,
                   help="the host's own arguments, appended to those the command sets (they win), e.g. "
                        "\"--init real --lr_img 1\" for --host dc; one string, quoted as a shell would")


def check_host_flags(args: argparse.Namespace) -> None:
    """The flags of :func:`add_host_flags` together, before any file is written: the device exists, the dataset
    loads, and a ``--scores`` file is a score file of that dataset."""
    check_config(ScoringConfig(device=args.device))
    labels = load_dataset(args.dataset, args.data_root).labels
    if args.scores:
        scorefile.check_matches(scorefile.load(args.scores), labels, args.dataset)


def add_budget_flag(p: argparse.ArgumentParser) -> None:
    """``--budget``: stop a resumable command early, to be continued by the same command."""
    p.add_argument("--budget", type=argtype(seconds), default=None, metavar="SECONDS",
                   help="start no point that would end after SECONDS (estimated from the points done); the "
                        "command then exits with status 3, and the same command continues it")
