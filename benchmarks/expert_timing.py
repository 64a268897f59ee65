"""What ``bench_mtt.py`` and ``bench_datm.py`` share: the clocks, the timer wrapper, the timed expert-training child
(its phases and its report at exit), the common flags, and the work folder's inputs (patched tree, data, scores).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def clocks() -> tuple[float, float]:
    """(wall, CPU) seconds: CPU time of this process, all threads (with --threads 1: the work itself, however busy
    the machine is)."""
    return time.perf_counter(), time.process_time()


def timed(fn: Callable[..., Any], add: Callable[[str, float, float], None],
          phase: Callable[[tuple[Any, ...]], str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = clocks()
        try:
            return fn(*args, **kwargs)
        finally:
            now_wall, now_cpu = clocks()
            add(phase(args), now_wall - wall, now_cpu - cpu)

    return wrapper


def timed_buffer_child(out: str, launch_args: list[str], utils: ModuleType,
                       inside_train: Mapping[str, str] | None = None) -> None:
    """Run an expert-training script through bilp launch with its phases timed; write them to ``out`` at exit.

    ``utils`` is the upstream's module holding ``epoch`` (imported before the script binds its names);
    ``inside_train`` maps more of its functions to the phase they are timed as (within ``train``)."""
    import torch

    from bilp_plugin import cli, runtime

    extra = dict(inside_train or {})
    times = {p: [0.0, 0.0] for p in ("level1", "train", *extra.values(), "test", "save")}
    marks: dict[str, tuple[float, float]] = {}
    start = clocks()

    def add(phase: str, wall: float, cpu: float) -> None:
        times[phase][0] += wall
        times[phase][1] += cpu

    timed_epoch = timed(utils.epoch, add, lambda args: "train" if args[0] == "train" else "test")

    def epoch(*args: Any, **kwargs: Any) -> Any:
        marks.setdefault("first_epoch", clocks())
        return timed_epoch(*args, **kwargs)

    utils.epoch = epoch
    for name, phase in extra.items():
        setattr(utils, name, timed(getattr(utils, name), add, lambda args, phase=phase: phase))
    runtime.prune_real = timed(runtime.prune_real, add, lambda args: "level1")
    torch.save = timed(torch.save, add, lambda args: "save")

    def report() -> None:
        end = clocks()
        phases: dict[str, float] = {}
        for k, suffix in ((0, ""), (1, "_cpu")):
            total = end[k] - start[k]
            setup = marks.get("first_epoch", end)[k] - start[k]
            phases |= {f"wall{suffix}": total, f"setup{suffix}": setup,
                       **{f"{p}{suffix}": v[k] for p, v in times.items()},
                       f"other{suffix}": total - setup - sum(times[p][k] for p in ("train", "test", "save"))}
        Path(out).write_text(json.dumps(phases))

    atexit.register(report)
    cli.main(["launch", *launch_args])


def build_parser(description: str) -> argparse.ArgumentParser:
    """The flags both benchmarks take first: data, scores, alphas, subset sizes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", default=os.environ.get("BILP_DATA"), help="folder holding cifar-10-batches-py/")
    p.add_argument("--scores", required=True, help="full-set score file (the authors' CIFAR10_LossConverge.json)")
    p.add_argument("--alphas", default="0,0.5,0.9", help="comma-separated level-1 pruning rates (0 first)")
    p.add_argument("--per-class", type=int, default=None, help="training images per class (default: all 5000)")
    p.add_argument("--test-per-class", type=int, default=None, help="test images per class (default: all)")
    return p


def run(adapter: str, a: argparse.Namespace, header: str, resolve_data: bool,
        run_alpha: Callable[[Path, Path, Path, float, argparse.Namespace, Path], dict[str, Any]],
        print_table: Callable[[list[dict[str, Any]]], None]) -> None:
    """The benchmark itself: check the flags, prepare the inputs in a work folder (:func:`inputs`; ``resolve_data``:
    pass the children ``--data-root`` made absolute), print ``header``, run one child per alpha in order, print the
    table."""
    values = alphas(a)
    with tempfile.TemporaryDirectory(prefix=f"bench-{adapter}-") as tmp:
        work = Path(a.workdir) if a.workdir else Path(tmp)
        data = Path(a.data_root).resolve() if resolve_data else Path(a.data_root)
        tree, data, scores = inputs(adapter, a, data, work)
        print(header)
        print_table([run_alpha(tree, data, scores, alpha, a, work) for alpha in values])


def alphas(a: argparse.Namespace) -> list[float]:
    """The checked ``--alphas`` (and ``--data-root``); exits with the fix on a bad one."""
    if not a.data_root:
        sys.exit("pass --data-root DIR (or export BILP_DATA=DIR) holding cifar-10-batches-py/")
    values = [float(x) for x in a.alphas.split(",")]
    if values[0] != 0:
        sys.exit(f"--alphas must start with 0 (the reference), got {a.alphas}")
    return values


def inputs(adapter: str, a: argparse.Namespace, data: Path, work: Path) -> tuple[Path, Path, Path]:
    """(tree, data, scores): the pinned upstream with the adapter's whole patch series exported under ``work``
    (the submodule is untouched), and ``data`` and the score file, cut to ``--per-class``/``--test-per-class``
    under ``work`` when asked."""
    from bilp_plugin.tools import apply

    tree = apply.export_patched(apply.Manifest.load(ROOT / "adapters" / adapter), work / "tree")
    scores = Path(a.scores).resolve()
    if a.per_class or a.test_per_class:
        from bilp_plugin.tools import layouts

        data = work / "data"
        layouts.write_cifar10_subset(a.data_root, data, a.per_class, a.test_per_class, scores)
        scores = data / scores.name
    return tree, data, scores
