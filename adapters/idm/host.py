"""``--host idm``: run demo, sweep and ablate points on the patched IDM (``IDM_cifar10.py``) with its own
evaluation (the launch mechanics: :mod:`bilp_plugin.lab.launched`).

Each point is one launch of the patched copy in ``<workdir>/upstream-idm/``, in ``<run>/upstream/`` (with the
``checkpoints/`` folder IDM writes its best set to)::

    bilp launch --seed SEED --fake-clock --threads T --skip-cifar-integrity IDM_cifar10.py -- --dataset CIFAR10 \\
        --model ConvNet --ipc I --Iteration N --eval_interval N --num_exp 1 --num_eval E --epoch_eval_train EE \\
        --batch_real B ... PUBLISHED --bilp ... --bilp-out RUN_DIR

``PUBLISHED`` is IDM's published CIFAR-10 command (``command.txt``: ``--aug``, ``--syn_ce``, ``--net_decay``, ...;
``--net_generate_interval 5`` at ipc 1); ``--batch-real`` is ours (the published runs use 5000 at ipc 1 and 256
at ipc 10). ``--eval_interval N`` makes IDM evaluate once, after the last iteration: ``E`` fresh ConvNets trained
for ``EE`` epochs on the partitioned set (IDM's ``number_sign_augment``), saved to
``res_DM_CIFAR10_<model>_<ipc>ipc.pt``. ``--upstream-args`` overrides any of these (e.g. ``"--trained_bs 64
--model_train_steps 2"`` for a small CPU run). IDM imports ``kornia``; its ``torchnet`` import falls back to the
adapter's copy of ``torchnet.meter`` (the compat patch). Progress: its ``iter = N`` lines (every 10 iterations) and its
``Evaluate_NN`` lines.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from bilp_plugin.hosting import HostSettings, Point
from bilp_plugin.lab.launched import Launch, LaunchedHost, Signal, saved_accuracies, unavailable as unavailable_here

ADAPTER = Path(__file__).resolve().parent
SCRIPTS = {"cifar10": ("IDM_cifar10.py", "CIFAR10")}
"""Our dataset names -> IDM's script and ``--dataset`` (CIFAR-100's and Tiny's published settings differ)."""
PUBLISHED = ["--dsa_strategy", "color_crop_cutout_flip_scale_rotate", "--init", "real", "--lr_img", "0.2",
             "--net_train_real", "--outer_loop", "1", "--mismatch_lambda", "0", "--net_decay", "--embed_last", "1000",
             "--syn_ce", "--ce_weight", "0.5", "--train_net_num", "1", "--aug"]
IMPORTS = {"kornia": "pip install -e '.[upstreams]' (or pip install kornia)"}
"""Modules IDM imports that BiLP's own dependencies do not bring, and how to get them."""


def unavailable(dataset: str) -> str | None:
    """Why ``--host idm`` cannot run here (``None`` when it can)."""
    if dataset not in SCRIPTS:
        return f"the idm host runs --dataset {' or '.join(SCRIPTS)} ({SCRIPTS['cifar10'][0]}), not {dataset!r}"
    for module, how in IMPORTS.items():
        if importlib.util.find_spec(module) is None:
            return f"IDM imports {module}, which is not importable here: {how}"
    return unavailable_here(ADAPTER)


class IdmHost(LaunchedHost):
    """Runs points as launches of the patched IDM."""

    name = "idm"
    evaluates_in_loop = True

    def __init__(self, args: HostSettings, workdir: Path, python: str = sys.executable) -> None:
        super().__init__(args, workdir, ADAPTER, python)

    @property
    def method(self) -> str:
        return "IDM"

    def upstream_args(self, run_dir: Path) -> list[str]:
        from bilp_plugin.lab.datasets import data_root

        a = self.options
        generate = ["--net_generate_interval", "5"] if a.ipc == 1 else []
        return ["--dataset", SCRIPTS[a.dataset][1], "--model", "ConvNet", "--ipc", str(a.ipc), "--Iteration",
                str(a.iterations), "--eval_interval", str(a.iterations), "--num_exp", "1", "--num_eval",
                str(a.eval_models), "--epoch_eval_train", str(a.eval_epochs), "--batch_real", str(a.batch_real),
                "--data_path", str(data_root(a.data_root)), "--save_path", str(run_dir / "upstream"),
                *PUBLISHED, *generate]

    def launches(self, point: Point, run_dir: Path, scores: Path) -> list[Launch]:
        a = self.options
        (run_dir / "upstream" / "checkpoints").mkdir(parents=True, exist_ok=True)
        args = [*self.upstream_args(run_dir), *point.bilp_flags(scores), "--bilp-out", str(run_dir)]
        signals = [Signal(r"iter = (\d+)", "distill", a.iterations), Signal(r"^Evaluation$", "evaluate", a.eval_models),
                   Signal(r"Evaluate_(\d+):", "evaluate", a.eval_models, offset=1)]
        command = self.launch(point, SCRIPTS[a.dataset][0], args, ("--skip-cifar-integrity",))
        return [Launch(command, run_dir / "upstream", signals)]

    def evaluated(self, run_dir: Path) -> tuple[list[float], dict[str, Any]]:
        accs, model = saved_accuracies(run_dir / "upstream")
        return accs, {"models": self.options.eval_models, "epochs": self.options.eval_epochs,
                      "model": f"{model} on number_sign_augment"}
