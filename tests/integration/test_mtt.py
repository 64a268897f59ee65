"""MTT (buffer.py experts, distill.py) patched with BiLP, on a 20-per-class CIFAR-10 subset of ``BILP_DATA``.

Every run is seeded the same way (``bilp launch --seed 0 --fake-clock``) in its own folder, with
``WANDB_MODE=disabled``. "compat" is the upstream with its compat patch only, "bare" the pinned upstream, "patched"
the whole series. Scores: the authors' ``CIFAR10_LossConverge.json`` from ``$BILP_SCORES_DIR`` (sliced to the
subset), else a seeded made-up score list (printed).
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
from bilp_plugin.tools import layouts
from bilp_adapters.experts import KEPT_FILE, SUBSET_FILE
from upstreams import materialise

from bilp_plugin.method import level1

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE = Path(__file__).with_name("probe_locals.py")
PER_CLASS, TEST_PER_CLASS, ALPHA = 20, 10, 0.9
SCORES = "CIFAR10_LossConverge.json"
EXPERTS = Path("buffers") / "CIFAR10_NO_ZCA" / "ConvNetW32"
COMMON = ["--dataset", "CIFAR10", "--model", "ConvNetW32", "--buffer_path", "buffers"]
BUFFER = ["--num_experts", "1", "--train_epochs", "2", "--save_interval", "1", "--batch_train", "64"]
DISTILL = ["--ipc", "1", "--syn_steps", "2", "--expert_epochs", "1", "--max_start_epoch", "1", "--Iteration", "2",
           "--eval_it", "100", "--num_eval", "1", "--epoch_eval_train", "1", "--lr_img", "100"]
BUFFER_LOCALS = "trainloader.dataset.images,trainloader.dataset.labels"
DISTILL_LOCALS = "image_syn,syn_lr,images_all,labels_all"


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

    @property
    def initial_images(self) -> torch.Tensor:
        (file,) = (self.cwd / "logged_files" / "CIFAR10").glob("*/images_0.pt")
        return torch.load(file)

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr


class MTT:
    """Runs of the three trees, each in its own folder under ``root``, cached by name."""

    def __init__(self, root: Path, data: Path, scores: Path) -> None:
        self.root, self.data, self.scores = root, data, scores
        self.trees = {name: materialise("mtt", root / "trees" / name, upto)
                      for name, upto in (("bare", 0), ("compat", 1), ("patched", None))}
        self.runs: dict[str, Run] = {}

    def bilp(self, alpha: float, *extra: str) -> list[str]:
        return ["--bilp", "--bilp-alpha", str(alpha), "--bilp-scores", str(self.scores), *extra]

    def run(self, name: str, tree: str, script: str, args: list[str], *, experts: str | None = None,
            fails: bool = False) -> Run:
        """``script`` of ``tree`` in folder ``name`` (experts copied from run ``experts``), probing its locals."""
        if name in self.runs:
            return self.runs[name]
        cwd = self.root / "runs" / name
        cwd.mkdir(parents=True)
        if experts is not None:
            shutil.copytree(self.runs[experts].cwd / "buffers", cwd / "buffers")
        probe = BUFFER_LOCALS if script == "buffer.py" else DISTILL_LOCALS
        script_args = [*COMMON, "--data_path", str(self.data),
                       *(BUFFER if script == "buffer.py" else DISTILL), *args]
        cmd = [sys.executable, str(PROBE), "locals.pt", "main", probe, "--", "--seed", "0", "--fake-clock",
               "--threads", "1", "--skip-cifar-integrity", str(self.trees[tree] / script), "--", *script_args]
        env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        if (proc.returncode != 0) != fails:
            raise AssertionError(f"{name}: {' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                 f"{proc.stderr[-3000:]}")
        self.runs[name] = Run(cwd, proc)
        return self.runs[name]


def _made_scores(count: int, dst: Path) -> Path:
    print(f"BILP_SCORES_DIR unset or without {SCORES}: level 1 ranks by a made-up seeded score list")
    made = dst / "made_scores.json"
    made.write_text(json.dumps(np.random.default_rng(0).random(count).tolist()))
    return made


@pytest.fixture(scope="module")
def mtt(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> MTT:
    for module in ("wandb", "kornia"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"MTT imports {module}: `pip install -e '.[upstreams]'` to run its integration tests")
    root = tmp_path_factory.mktemp("mtt")
    data = root / "data"
    official = Path(os.environ.get("BILP_SCORES_DIR") or "/nonexistent") / SCORES
    layouts.write_cifar10_subset(cifar10_root, data, PER_CLASS, TEST_PER_CLASS,
                                official if official.is_file() else None)
    return MTT(root, data, data / SCORES if official.is_file() else _made_scores(PER_CLASS * 10, data))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _alpha_runs(mtt: MTT) -> tuple[Run, Run]:
    """Experts trained with --bilp-alpha 0.9, and distill.py on them with the same flags."""
    buffer = mtt.run("alpha09-buffer", "patched", "buffer.py", mtt.bilp(ALPHA, "--bilp-out", "record"))
    distill = mtt.run("alpha09-distill", "patched", "distill.py", mtt.bilp(ALPHA, "--bilp-out", "record"),
                      experts="alpha09-buffer")
    return buffer, distill


def test_compat_fix_saves_distinct_epochs(mtt: MTT) -> None:
    """Bare buffer.py saves every epoch as the final weights on a CPU; with the compat fix the epochs differ,
    and the final checkpoint is the same network (the fix changes what is saved, not the training)."""
    bare = mtt.run("bare-buffer", "bare", "buffer.py", []).trajectory
    compat = mtt.run("compat-buffer", "compat", "buffer.py", []).trajectory
    assert len(bare) == len(compat) == 3
    assert all(_same(epoch, bare[-1]) for epoch in bare)
    assert not _same(compat[0], compat[1]) and not _same(compat[1], compat[2])
    assert _same(compat[-1], bare[-1])


def test_patched_without_bilp_is_the_baseline(mtt: MTT) -> None:
    """Same expert trajectory, same initial and final synthetic set and learnt lr, bit for bit."""
    compat = mtt.run("compat-buffer", "compat", "buffer.py", [])
    patched = mtt.run("patched-buffer", "patched", "buffer.py", [])
    assert len(compat.trajectory) == len(patched.trajectory) == 3
    assert all(_same(a, b) for a, b in zip(compat.trajectory, patched.trajectory))
    base = mtt.run("compat-distill", "compat", "distill.py", [], experts="compat-buffer")
    other = mtt.run("patched-distill", "patched", "distill.py", [], experts="compat-buffer")
    assert torch.equal(base.initial_images, other.initial_images)
    for name in ("image_syn", "syn_lr"):
        assert torch.equal(base.locals[name], other.locals[name]), name
    assert not torch.equal(base.locals["image_syn"], base.initial_images), "distillation changed nothing"
    assert not (other.cwd / "bilp_runs").exists()


def test_alpha_zero_is_the_baseline(mtt: MTT) -> None:
    """--bilp --bilp-alpha 0 in both stages: identical outputs; the experts are recorded as the full set."""
    compat = mtt.run("compat-buffer", "compat", "buffer.py", [])
    buffer = mtt.run("alpha0-buffer", "patched", "buffer.py", mtt.bilp(0.0, "--bilp-out", "record"))
    assert len(buffer.trajectory) == 3
    assert all(_same(a, b) for a, b in zip(compat.trajectory, buffer.trajectory))
    subset = json.loads((buffer.cwd / EXPERTS / SUBSET_FILE).read_text())
    assert subset["full"] and subset["kept"] == subset["n"] == PER_CLASS * 10
    base = mtt.run("compat-distill", "compat", "distill.py", [], experts="compat-buffer")
    distill = mtt.run("alpha0-distill", "patched", "distill.py", mtt.bilp(0.0, "--bilp-out", "record"),
                      experts="alpha0-buffer")
    assert torch.equal(base.initial_images, distill.initial_images)
    for name in ("image_syn", "syn_lr"):
        assert torch.equal(base.locals[name], distill.locals[name]), name
    assert json.loads((distill.cwd / "record" / "config.json").read_text())["bilp"]["alpha"] == 0.0


def test_alpha_trains_experts_on_exactly_the_kept_set(mtt: MTT) -> None:
    """The tensors buffer.py's trainloader reads are the kept rows of the full set, in dataset order; the expert
    folder records those indices; distill.py with the same flags accepts the experts, keeps its --bilp values
    through wandb's config and initialises from kept images only."""
    full = mtt.run("compat-buffer", "compat", "buffer.py", []).locals
    buffer, distill = _alpha_runs(mtt)
    labels = full["trainloader.dataset.labels"].numpy()
    scores = np.asarray(json.loads(mtt.scores.read_text()))
    expected = level1.keep_lowest(scores, labels, ALPHA)
    assert len(expected) == 10 * (PER_CLASS - int(ALPHA * PER_CLASS))
    assert np.array_equal(np.load(buffer.cwd / "record" / "kept_indices.npy"), expected)
    assert np.array_equal(np.load(buffer.cwd / EXPERTS / KEPT_FILE), expected)
    seen = buffer.locals
    assert torch.equal(seen["trainloader.dataset.images"], full["trainloader.dataset.images"][expected])
    assert torch.equal(seen["trainloader.dataset.labels"], full["trainloader.dataset.labels"][expected])
    subset = json.loads((buffer.cwd / EXPERTS / SUBSET_FILE).read_text())
    assert subset["kept"] == len(expected) and subset["scores_sha256"] is not None

    config = json.loads((distill.cwd / "record" / "config.json").read_text())
    assert config["bilp"]["alpha"] == ALPHA and config["bilp"]["scores"] == str(mtt.scores)
    assert config["upstream_args"]["bilp_scores"] == str(mtt.scores)
    images_all, labels_all = distill.locals["images_all"], distill.locals["labels_all"]
    for c, image in enumerate(distill.initial_images):
        rows = [i for i in range(len(images_all)) if torch.equal(images_all[i], image)]
        assert rows and all(i in set(expected.tolist()) and labels_all[i] == c for i in rows), c


KEPT = 10 * (PER_CLASS - int(ALPHA * PER_CLASS))
TRAINED_ALPHA = f"{KEPT} of 200 samples (criterion loss, alpha 0.9"


@pytest.mark.parametrize(("alpha", "experts", "trained", "wanted"), [
    (0.5, "alpha09-buffer", TRAINED_ALPHA, "keeps 100 of 200 samples (criterion loss, alpha 0.5"),
    (0.0, "alpha09-buffer", TRAINED_ALPHA, "keeps the full set (200 samples)"),
    (ALPHA, "compat-buffer", f"the full set (no {SUBSET_FILE}: trained without --bilp)",
     f"keeps {KEPT} of 200 samples (criterion loss, alpha 0.9"),
], ids=["other-alpha", "full-set", "no-record"])
def test_distill_refuses_experts_of_another_subset(mtt: MTT, alpha: float, experts: str, trained: str,
                                                   wanted: str) -> None:
    """distill.py --bilp refuses experts trained on another subset, before distilling, naming both subsets."""
    _alpha_runs(mtt)
    mtt.run("compat-buffer", "compat", "buffer.py", [])
    out = mtt.run(f"refuse-{alpha}-{experts}", "patched", "distill.py", mtt.bilp(alpha), experts=experts,
                  fails=True).output
    assert "bilp: error: the experts in buffers/CIFAR10_NO_ZCA/ConvNetW32 were trained on " + trained in out
    assert wanted in out
    assert "iter = 0000" not in out


def test_buffer_refuses_to_mix_subsets_in_one_folder(mtt: MTT) -> None:
    _alpha_runs(mtt)
    out = mtt.run("refuse-mix", "patched", "buffer.py", mtt.bilp(0.5), experts="alpha09-buffer", fails=True).output
    assert f"holds experts trained on {KEPT} of 200 samples" in out
    assert "this run would add experts trained on 100 of 200 samples" in out
    assert "Itr: 0" not in out


def test_level2_is_refused(mtt: MTT) -> None:
    out = mtt.run("refuse-beta", "patched", "buffer.py", mtt.bilp(ALPHA, "--bilp-beta", "0.1"), fails=True).output
    assert "--bilp-beta must be 0 for MTT, got 0.1: MTT's trajectory-matching loss sees no real samples" in out
