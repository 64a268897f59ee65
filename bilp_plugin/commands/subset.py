"""``bilp subset SRC DST``: a per-class subset of CIFAR-10 in torchvision's layout, for CPU smoke runs, tests and
benchmarks (:mod:`bilp_plugin.tools.layouts`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bilp_plugin.tools import layouts


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("subset", help="write a per-class subset of CIFAR-10 (torchvision layout)",
                       description=(layouts.__doc__ or "").splitlines()[0])
    p.add_argument("src", help="folder holding cifar-10-batches-py/ (the full set)")
    p.add_argument("dst", help="folder to write the subset's cifar-10-batches-py/ into")
    p.add_argument("--per-class", type=int, default=None, help="training samples per class (default: all)")
    p.add_argument("--test-per-class", type=int, default=None, help="test samples per class (default: all)")
    p.add_argument("--scores", default=None, help="a full-set score file (JSON list) to slice for the subset")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    kept = layouts.write_cifar10_subset(args.src, args.dst, args.per_class, args.test_per_class, args.scores)
    print(f"wrote {len(kept)} training samples to {Path(args.dst) / layouts.FOLDER}")
    return 0
