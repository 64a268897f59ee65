"""``--host dc``: run demo, sweep and ablate points on the patched DatasetCondensation: ``main_DM.py`` for DM,
``main.py --method DC`` or ``--method DSA`` for DC and DSA (the launch mechanics: :mod:`bilp_plugin.lab.launched`).

Each point is one launch of the patched copy in ``<workdir>/upstream-dc/``::

    bilp launch --seed SEED --fake-clock --threads T <workdir>/upstream-dc/main_DM.py -- --dataset MNIST \\
        --ipc 1 --Iteration N --num_exp 1 --num_eval E --eval_mode end ... --bilp ... --bilp-out RUN_DIR

Per method, the upstream's README command: DSA adds ``--init real --dsa_strategy
color_crop_cutout_flip_scale_rotate``; DC and DM keep their script's defaults (DC: noise initialisation; DM: real
initialisation, that strategy). ``--upstream-args`` overrides any of them. The upstream evaluates its synthetic
set once at the end (``--eval_mode end``: ``E`` fresh networks of the distillation's ``--model``, ``ConvNet``
unless the options name another, e.g. ``ConvNetW32``) and saves
``res_<method>_<dataset>_<model>_<ipc>ipc.pt``; its accuracies become ``RUN_DIR/result.json``. Progress: its
``iter = N`` lines (every 10 iterations) and its ``Evaluate_NN`` lines (one per evaluated network).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bilp_plugin.hosting import HostSettings, Point
from bilp_plugin.lab.launched import Launch, LaunchedHost, Signal, saved_accuracies, unavailable as unavailable_here

DATASETS = {"mnist": "MNIST", "cifar10": "CIFAR10"}
"""Our dataset names -> DatasetCondensation's ``--dataset`` (the two whose layouts ``BILP_DATA`` holds)."""
MODEL = "ConvNet"
"""The upstream's default network (ConvNet-3, width 128, instance norm)."""
ADAPTER = Path(__file__).resolve().parent
"""This adapter's folder (its ``manifest.toml``; ``patches/`` and ``third_party/`` are two levels up)."""
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def unavailable(dataset: str, root: Path | None = None) -> str | None:
    """Why ``--host dc`` cannot run here (``None`` when it can): the dataset, the adapter, the submodule, the
    patch series."""
    if dataset not in DATASETS:
        return (f"DatasetCondensation does not load {dataset!r}: pass --dataset {' or '.join(DATASETS)} "
                "with --data-root")
    return unavailable_here(root / "adapters" / "dc" if root else ADAPTER)


def method_args(method: str) -> list[str]:
    """The README's settings of ``method`` (see the module docstring)."""
    return {"DC": ["--method", "DC"], "DSA": ["--method", "DSA", "--init", "real", "--dsa_strategy", DSA_STRATEGY],
            "DM": []}[method]


def model(args: HostSettings) -> str:
    """The upstream network the options name (``--model``), else the upstream's default."""
    return args.model or MODEL


def eval_epochs(args: HostSettings) -> int:
    """What the upstream trains its evaluation networks for: ``main.py`` forces 1000 epochs when it augments
    (DSA always, DC on MNIST) and 300 otherwise, ignoring ``--epoch_eval_train``; ``main_DM.py`` honours it."""
    if args.method == "DSA" or args.method == "DC" and args.dataset == "mnist":
        return 1000
    if args.method == "DC":
        return 300
    return int(args.eval_epochs)


class DcHost(LaunchedHost):
    """Runs points as launches of the patched DatasetCondensation (one process per point)."""

    name = "dc"
    evaluates_in_loop = True

    def __init__(self, args: HostSettings, workdir: Path, root: Path | None = None,
                 python: str = sys.executable) -> None:
        super().__init__(args, workdir, root / "adapters" / "dc" if root else ADAPTER, python)

    def upstream_args(self, run_dir: Path) -> list[str]:
        from bilp_plugin.lab.datasets import data_root

        a = self.options
        return ["--dataset", DATASETS[a.dataset], "--model", model(a), "--ipc", str(a.ipc),
                "--Iteration", str(a.iterations), "--batch_real", str(a.batch_real), "--num_exp", "1",
                "--num_eval", str(a.eval_models), "--epoch_eval_train", str(a.eval_epochs), "--eval_mode", "end",
                "--data_path", str(data_root(a.data_root)), "--save_path", str(run_dir / "upstream"),
                *method_args(a.method)]

    def launches(self, point: Point, run_dir: Path, scores: Path) -> list[Launch]:
        a = self.options
        script = "main_DM.py" if a.method == "DM" else "main.py"
        flags = ("--skip-cifar-integrity",) if a.dataset == "cifar10" else ()
        args = [*self.upstream_args(run_dir), *point.bilp_flags(scores), "--bilp-out", str(run_dir)]
        signals = [Signal(r"iter = (\d+)", "distill", a.iterations), Signal(r"^Evaluation$", "evaluate", a.eval_models),
                   Signal(r"Evaluate_(\d+):", "evaluate", a.eval_models, offset=1)]
        return [Launch(self.launch(point, script, args, flags), run_dir / "upstream", signals)]

    def evaluated(self, run_dir: Path) -> tuple[list[float], dict[str, Any]]:
        accs, model = saved_accuracies(run_dir / "upstream")
        return accs, {"models": self.options.eval_models, "epochs": eval_epochs(self.options), "model": model}
