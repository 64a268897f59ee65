"""DATM (buffer_FTD.py experts, DATM.py and DATM_tesla.py distillation) patched with BiLP, on a 20-per-class
CIFAR-10 subset of ``BILP_DATA``.

Every run is seeded the same way (``bilp launch --seed 0 --fake-clock``) in its own folder, with
``WANDB_MODE=disabled`` and the tree's root on ``PYTHONPATH`` (DATM's scripts import ``utils`` from it). "compat" is
the upstream with its compat patch only (the pinned scripts stop on a CPU: ``cuda:0``), "patched" the whole series.
The distillation scripts read a tiny YAML config (``--cfg``) with the ``--bilp`` flags on the command line. Each run
happens once per module (:class:`DATM` caches them by name). Scores: the authors' ``CIFAR10_LossConverge.json``
from ``$BILP_SCORES_DIR`` (sliced to the subset), else a seeded made-up score list (printed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from bilp_adapters.experts import KEPT_FILE, SUBSET_FILE
from upstreams import materialise

from bilp_plugin.method import level1
from bilp_plugin.tools import layouts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE = Path(__file__).with_name("probe_locals.py")
PER_CLASS, TEST_PER_CLASS, ALPHA = 20, 10, 0.5
SCORES = "CIFAR10_LossConverge.json"
EXPERTS = Path("buffers") / "CIFAR10_NO_ZCA" / "ConvNetW32"
BUFFER = ["--dataset", "CIFAR10", "--model", "ConvNetW32", "--buffer_path", "buffers", "--num_experts", "1",
          "--save_interval", "1", "--rho_max", "0.01", "--rho_min", "0.01", "--alpha", "0.3"]
SHORT = ["--train_epochs", "2", "--batch_train", "64"]
TRAINED = ["--train_epochs", "10", "--batch_train", "16", "--lr_teacher", "0.05", "--mom", "0.9"]
"""Experts that predict some kept image of every class right (``samples_predicted_correctly`` needs one)."""
CONFIG = """dataset: CIFAR10
model: ConvNetW32
ipc: 1
syn_steps: 2
expert_epochs: 1
current_max_start_epoch: 1
max_start_epoch: 1
Iteration: 2
eval_it: 100
num_eval: 1
epoch_eval_train: 1
skip_first_eva: False
lr_img: 100
batch_train: 64
zca: False
buffer_path: buffers
pix_init: {pix_init}
data_path: {data}
"""
BUFFER_LOCALS = "trainloader.dataset.images,trainloader.dataset.labels"
DISTILL_LOCALS = "image_syn,label_syn,syn_lr,images_all,labels_all"


@dataclass
class Run:
    cwd: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def locals(self) -> dict[str, torch.Tensor]:
        return torch.load(self.cwd / "locals.pt")

    @property
    def trajectory(self) -> list[list[torch.Tensor]]:
        (expert,) = torch.load(self.cwd / EXPERTS / "replay_buffer_0.pt")
        return expert

    def saved(self, name: str) -> torch.Tensor:
        (file,) = (self.cwd / "logged_files" / "CIFAR10" / "1" / "ConvNetW32").glob(f"*/Normal/{name}.pt")
        return torch.load(file)

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


class DATM:
    """Runs of the two trees, each in its own folder under ``root``, cached by name."""

    def __init__(self, root: Path, data: Path, scores: Path) -> None:
        self.root, self.data, self.scores = root, data, scores
        self.trees = {name: materialise("datm", root / "trees" / name, upto)
                      for name, upto in (("compat", 1), ("patched", None))}
        self.runs: dict[str, Run] = {}

    def bilp(self, alpha: float, *extra: str) -> list[str]:
        return ["--bilp", "--bilp-alpha", str(alpha), "--bilp-scores", str(self.scores), *extra]

    def run(self, name: str, tree: str, script: str, args: list[str], *, experts: str | None = None,
            pix_init: str = "real", fails: bool = False) -> Run:
        """``script`` of ``tree`` in folder ``name`` (experts copied from run ``experts``), probing its locals; the
        distillation scripts get a config file and ``args`` after ``--cfg``."""
        if name in self.runs:
            return self.runs[name]
        cwd = self.root / "runs" / name
        cwd.mkdir(parents=True)
        if experts is not None:
            shutil.copytree(self.runs[experts].cwd / "buffers", cwd / "buffers")
        if script.startswith("buffer"):
            probe, script_args = BUFFER_LOCALS, [*BUFFER, "--data_path", str(self.data), *args]
        else:
            (cwd / "tiny.yaml").write_text(CONFIG.format(pix_init=pix_init, data=self.data))
            probe, script_args = DISTILL_LOCALS, args if "--cfg" in args else ["--cfg", "tiny.yaml", *args]
        cmd = [sys.executable, str(PROBE), "locals.pt", "main", probe, "--", "--seed", "0", "--fake-clock",
               "--threads", "1", "--skip-cifar-integrity", str(self.trees[tree] / script), "--", *script_args]
        env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(self.trees[tree])}
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        if (proc.returncode != 0) != fails:
            raise AssertionError(f"{name}: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
        self.runs[name] = Run(cwd, proc)
        return self.runs[name]

    # the runs the tests share
    def compat_buffer(self) -> Run:
        return self.run("compat-buffer", "compat", "buffer/buffer_FTD.py", SHORT)

    def pruned_buffer(self) -> Run:
        return self.run("alpha-buffer", "patched", "buffer/buffer_FTD.py",
                        [*TRAINED, *self.bilp(ALPHA, "--bilp-out", "record")])

    def compat_distill(self, script: str) -> Run:
        self.compat_buffer()
        return self.run(f"compat-{script}", "compat", f"distill/{script}", [], experts="compat-buffer")


def _made_scores(count: int, dst: Path) -> Path:
    print(f"BILP_SCORES_DIR unset or without {SCORES}: level 1 ranks by a made-up seeded score list")
    made = dst / "made_scores.json"
    made.write_text(json.dumps(np.random.default_rng(0).random(count).tolist()))
    return made


@pytest.fixture(scope="module")
def datm(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> DATM:
    for module in ("wandb", "kornia", "yacs"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"DATM imports {module}: `pip install -e '.[upstreams]'` to run its integration tests")
    root = tmp_path_factory.mktemp("datm")
    data = root / "data"
    official = Path(os.environ.get("BILP_SCORES_DIR") or "/nonexistent") / SCORES
    layouts.write_cifar10_subset(cifar10_root, data, PER_CLASS, TEST_PER_CLASS,
                                 official if official.is_file() else None)
    return DATM(root, data, data / SCORES if official.is_file() else _made_scores(PER_CLASS * 10, data))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _same_distillation(base: Run, other: Run) -> None:
    assert torch.equal(base.saved("images_0"), other.saved("images_0"))
    for name in ("image_syn", "label_syn", "syn_lr"):
        assert torch.equal(base.locals[name], other.locals[name]), name
    assert not torch.equal(base.locals["image_syn"], base.saved("images_0")), "distillation changed nothing"


def test_buffer_without_bilp_and_with_alpha_zero_is_the_baseline(datm: DATM) -> None:
    """Same expert trajectory (distinct epochs: the compat fix), bit for bit; alpha 0 records the full set."""
    compat = datm.compat_buffer()
    patched = datm.run("patched-buffer", "patched", "buffer/buffer_FTD.py", SHORT)
    alpha0 = datm.run("alpha0-buffer", "patched", "buffer/buffer_FTD.py",
                      [*SHORT, *datm.bilp(0.0, "--bilp-out", "record")])
    assert len(compat.trajectory) == 3 and not _same(compat.trajectory[0], compat.trajectory[-1])
    for run in (patched, alpha0):
        assert all(_same(a, b) for a, b in zip(compat.trajectory, run.trajectory))
    subset = json.loads((alpha0.cwd / EXPERTS / SUBSET_FILE).read_text())
    assert subset["full"] and subset["kept"] == subset["n"] == PER_CLASS * 10
    assert not (patched.cwd / EXPERTS / SUBSET_FILE).exists() and not (patched.cwd / "bilp_runs").exists()


@pytest.mark.parametrize("script", ["DATM.py", "DATM_tesla.py"])
def test_distill_without_bilp_and_with_alpha_zero_is_the_baseline(datm: DATM, script: str) -> None:
    """The initial and final synthetic images, the learnt soft labels and lr, bit for bit, from the same config
    file: without --bilp, and with --bilp --bilp-alpha 0 on the experts buffer_FTD.py --bilp --bilp-alpha 0 made."""
    base = datm.compat_distill(script)
    _same_distillation(base, datm.run(f"patched-{script}", "patched", f"distill/{script}", [],
                                      experts="compat-buffer"))
    datm.run("alpha0-buffer", "patched", "buffer/buffer_FTD.py", [*SHORT, *datm.bilp(0.0, "--bilp-out", "record")])
    alpha0 = datm.run(f"alpha0-{script}", "patched", f"distill/{script}", datm.bilp(0.0, "--bilp-out", "record"),
                      experts="alpha0-buffer")
    _same_distillation(base, alpha0)
    assert json.loads((alpha0.cwd / "record" / "config.json").read_text())["bilp"]["alpha"] == 0.0


def test_buffer_trains_experts_on_exactly_the_kept_rows(datm: DATM) -> None:
    """The tensors buffer_FTD.py's trainloader reads are the kept rows of the full set, in dataset order; the
    expert folder records those indices."""
    full = datm.compat_buffer().locals
    buffer = datm.pruned_buffer()
    labels = full["trainloader.dataset.labels"].numpy()
    expected = level1.keep_lowest(np.asarray(json.loads(datm.scores.read_text())), labels, ALPHA)
    assert len(expected) == 10 * (PER_CLASS - int(ALPHA * PER_CLASS))
    assert np.array_equal(np.load(buffer.cwd / "record" / "kept_indices.npy"), expected)
    assert np.array_equal(np.load(buffer.cwd / EXPERTS / KEPT_FILE), expected)
    for name in ("trainloader.dataset.images", "trainloader.dataset.labels"):
        assert torch.equal(buffer.locals[name], full[name][expected]), name
    assert json.loads((buffer.cwd / EXPERTS / SUBSET_FILE).read_text())["kept"] == len(expected)


@pytest.mark.parametrize(("script", "pix_init"), [("DATM.py", "samples_predicted_correctly"),
                                                  ("DATM_tesla.py", "real")])
def test_distill_holds_and_initialises_from_the_kept_rows_only(datm: DATM, script: str, pix_init: str) -> None:
    """With the buffer's flags, the distillation script accepts its experts, holds the kept rows only as its real
    set (images_all, labels_all: what indices_class indexes) and initialises every synthetic image from one."""
    full = datm.compat_buffer().locals
    datm.pruned_buffer()
    run = datm.run(f"alpha-{script}", "patched", f"distill/{script}", datm.bilp(ALPHA, "--bilp-out", "record"),
                   experts="alpha-buffer", pix_init=pix_init)
    expected = np.load(run.cwd / "record" / "kept_indices.npy")
    images_all, labels_all = run.locals["images_all"], run.locals["labels_all"]
    assert torch.equal(images_all, full["trainloader.dataset.images"][expected])
    assert torch.equal(labels_all, full["trainloader.dataset.labels"][expected])
    for c, image in enumerate(run.saved("images_0")):
        assert any(torch.equal(kept, image) and labels_all[i] == c for i, kept in enumerate(images_all)), c
    config = json.loads((run.cwd / "record" / "config.json").read_text())
    assert config["bilp"]["alpha"] == ALPHA and config["upstream_args"]["pix_init"] == pix_init


KEPT = 10 * (PER_CLASS - int(ALPHA * PER_CLASS))


@pytest.mark.parametrize(("alpha", "experts", "trained", "wanted"), [
    (0.9, "alpha-buffer", f"{KEPT} of 200 samples (criterion loss, alpha 0.5",
     "keeps 20 of 200 samples (criterion loss, alpha 0.9"),
    (ALPHA, "compat-buffer", f"the full set (no {SUBSET_FILE}: trained without --bilp)",
     f"keeps {KEPT} of 200 samples (criterion loss, alpha 0.5"),
], ids=["other-alpha", "no-record"])
def test_distill_refuses_experts_of_another_subset(datm: DATM, alpha: float, experts: str, trained: str,
                                                   wanted: str) -> None:
    """DATM.py --bilp refuses experts trained on another subset, before distilling, naming both subsets."""
    datm.compat_buffer()
    datm.pruned_buffer()
    out = datm.run(f"refuse-{alpha}-{experts}", "patched", "distill/DATM.py", datm.bilp(alpha), experts=experts,
                   fails=True).output
    assert "bilp: error: the experts in buffers/CIFAR10_NO_ZCA/ConvNetW32 were trained on " + trained in out
    assert wanted in out and "training begins" not in out


def test_level2_is_refused_as_the_flags_are_parsed(datm: DATM) -> None:
    """Before the config is read or any data loads, with DATM's own CIFAR-10 config file; the usage line lists
    level 1's flags only (buffer_FTD.py adds the flags with the same call)."""
    config = datm.trees["patched"] / "configs" / "CIFAR-10" / "ConvIN" / "IPC10.yaml"
    out = datm.run("refuse-beta", "patched", "distill/DATM.py", ["--cfg", str(config), "--bilp", "--bilp-beta", "0.1"],
                   fails=True).output
    assert "error: --bilp-beta must be 0 for DATM, got 0.1: no real batch enters DATM's matching loss" in out
    assert "[--bilp-alpha" in out and "[--bilp-beta" not in out
    assert "BUILDING DATASET" not in out and "Hyper-parameters" not in out
