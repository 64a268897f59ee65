"""Run an upstream script reproducibly, without editing it.

    python -m bilp_plugin.launch --seed 0 --fake-clock -- main.py --dataset MNIST --ipc 1 ...

The upstreams reseed torch from the wall clock whenever they build a network and draw augmentation seeds from
``time.time()``; they never seed numpy. This launcher seeds ``random``, numpy and torch, optionally replaces
``time.time`` with a clock that advances a fixed step per call, optionally skips torchvision's CIFAR md5 check
(the rebuilt CIFAR-10 cannot match it), then runs the script as ``__main__`` (its folder first on ``sys.path``, the current folder unchanged). Two launches
with the same flags and the same script arguments give bit-identical runs on the same machine.
"""

from __future__ import annotations

import argparse
import random
import runpy
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


class FakeClock:
    """``time.time`` stand-in: ``start``, then ``start + step``, ``start + 2 step``, ..."""

    def __init__(self, start: float = 1_700_000_000.0, step: float = 0.001) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def skip_cifar_integrity() -> None:
    import torchvision.datasets.cifar as cifar

    cifar.check_integrity = lambda *a, **k: True  # type: ignore[assignment]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bilp_plugin.launch", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="seed of random, numpy and torch")
    p.add_argument("--fake-clock", action="store_true", help="time.time advances 1 ms per call from a fixed start")
    p.add_argument("--skip-cifar-integrity", action="store_true", help="skip torchvision's CIFAR md5 check")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (same value: same sums)")
    p.add_argument("script", help="the upstream script")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments (after --)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    script = Path(a.script).resolve()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.skip_cifar_integrity:
        skip_cifar_integrity()
    seed_everything(a.seed)
    if a.fake_clock:
        time.time = FakeClock()  # type: ignore[assignment]
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), *args]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
