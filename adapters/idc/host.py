"""``--host idc``: run demo, sweep and ablate points on the patched IDC (``condense.py``), evaluated by IDC's own
training code (the launch mechanics: :mod:`bilp_plugin.lab.launched`).

Each point is two launches in ``<run>/upstream/``, from the patched copy in ``<workdir>/upstream-idc/``, IDC's
hard-coded CUDA redirected to the CPU where there is no GPU:

1. ``condense.py -d D --data_dir ROOT --ipc I --niter N --batch_real B --repeat E --test ... --bilp ...``:
   condensation with BiLP, no evaluation (``--test``; its own schedule would evaluate 5 times), the set saved to
   ``results/test/data.pt``;
2. ``evaluate.py`` (this adapter's runner, same arguments): ``E`` fresh networks trained on the decoded set by
   IDC's ``train`` for ``--eval-epochs`` (IDC's own default is 1000), their last top-1 accuracies.

``--iterations`` is IDC's ``--niter``: ``niter * 100 // inner_loop`` outer iterations of ``inner_loop`` matching
steps each (at least 50 outer iterations). The defaults follow the paper's IDC setting: factor 2 (``-f 2``) and
the dataset's ``--reproduce`` preset of ``misc/reproduce.py`` (metric, image learning rate, network-update data,
MNIST's augmentation at factor 2), passed explicitly because ``--reproduce`` itself would reset ``--niter`` to
2000. ``--upstream-args`` (e.g. ``"--width 0.125 --inner_loop 2"``) overrides any of them. Progress: IDC's
``(Iter N)`` lines (every ``n_iter // 50`` iterations) and the runner's line per evaluated network.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import HostSettings, Point
from bilp_plugin.lab.launched import Launch, LaunchedHost, Signal, unavailable as unavailable_here

ADAPTER = Path(__file__).resolve().parent
RUNNER = ADAPTER / "evaluate.py"
FACTOR = 2
PRESETS = {
    "cifar10": ["--metric", "mse", "--lr_img", "5e-3", "--n_data", "2000"],
    "mnist": ["--metric", "l1", "--lr_img", "1e-4", "--n_data", "500", "--aug_type", "color_crop",
              "--mixup_net", "vanilla", "--mixup", "vanilla", "--dsa_strategy", "color_crop_scale_rotate"],
}
"""IDC's ``--reproduce`` settings (``misc/reproduce.py``) per dataset, at factor 2; the names IDC's ``-d`` takes."""
EVAL_FILE = "bilp-idc-eval.json"


def unavailable(dataset: str) -> str | None:
    """Why ``--host idc`` cannot run here (``None`` when it can)."""
    if dataset not in PRESETS:
        return f"the idc host runs --dataset {' or '.join(PRESETS)} (IDC's own loaders), not {dataset!r}"
    return unavailable_here(ADAPTER)


class IdcHost(LaunchedHost):
    """Runs points as a condensation and an evaluation launch of the patched IDC."""

    name = "idc"

    def __init__(self, args: HostSettings, workdir: Path, python: str = sys.executable) -> None:
        super().__init__(args, workdir, ADAPTER, python)

    @property
    def method(self) -> str:
        return "IDC"

    def upstream_args(self) -> list[str]:
        from bilp_plugin.lab.datasets import data_root

        a = self.options
        return ["-d", a.dataset, "--data_dir", str(data_root(a.data_root)), "--ipc", str(a.ipc), "--niter",
                str(a.iterations), "--batch_real", str(a.batch_real), "--repeat", str(a.eval_models), "--test",
                "-f", str(FACTOR), *PRESETS[a.dataset]]

    def launches(self, point: Point, run_dir: Path, scores: Path) -> list[Launch]:
        a = self.options
        flags = ("--cuda-to-cpu", *(("--skip-cifar-integrity",) if a.dataset == "cifar10" else ()))
        cwd = run_dir / "upstream"
        condense = self.launch(point, "condense.py",
                               [*self.upstream_args(), *point.bilp_flags(scores), "--bilp-out", str(run_dir)], flags)
        evaluate = self.launch(point, RUNNER, [
            "--eval-epochs", str(a.eval_epochs), "--eval-out", str(cwd / EVAL_FILE), "--", *self.upstream_args()],
            flags)
        tree = {"PYTHONPATH": os.pathsep.join(filter(None, [str(self.tree), os.environ.get("PYTHONPATH")]))}
        return [Launch(condense, cwd, [Signal(r"matching for (\d+) iteration", "distill", sets_total=True),
                                       Signal(r"\(Iter\s+(\d+)\)", "distill")]),
                Launch(evaluate, cwd, [Signal(r"idc evaluation network (\d+)/", "evaluate", a.eval_models)], tree)]

    def evaluated(self, run_dir: Path) -> tuple[list[float], dict[str, Any]]:
        file = run_dir / "upstream" / EVAL_FILE
        if not file.is_file():
            raise BiLPError(f"IDC's evaluation wrote no {file}: see the log.txt beside it")
        saved = json.loads(file.read_text())
        return [float(a) for a in saved["accuracy"]], {"models": self.options.eval_models, "epochs": saved["epochs"],
                                                       "model": saved["model"], "best": saved["best"]}
