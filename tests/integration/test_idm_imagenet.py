"""IDM's ``IDM_imagenet.py`` patched with BiLP, on a fake ImageNet tree this module writes (6 classes of 8 tiny PNGs,
resized to 64 by the script's ``--size``), on the CPU (``--cuda-to-cpu``: the script's loaders hard-code CUDA).

The published ImageNet command of IDM's ``command.txt`` (``ConvNet_6``, ``--aug``, ``--syn_ce``, ...) shrunk: all 6
classes (``--nclass 6 --phase 0 --dseed 1``), 3 iterations, real batches of 4, one network-training step, no
evaluation (``--eval_interval`` beyond ``--Iteration``). "compat" is the upstream with its compat patch only (the
bare script cannot run here: its subset is hard-coded to classes 400-499 of a 1000-class tree and it caches images
in the authors' own folder), "patched" the whole series. Neither has ``tests/stubs`` on its path: the compat patch
takes the adapter's copy of torchnet's meter. Level-1 scores: ``bilp score --dataset imagefolder`` on the tree.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import write_tree
from upstreams import launch, materialise

from bilp_plugin.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES, PER_CLASS, BATCH, ALPHA, BETA, INTERVAL = 6, 8, 4, 0.25, 0.3, 2
ARGS = ["--dataset", "imagenet_subset", "--model", "ConvNet_6", "--ipc", "1", "--aug", "--init", "real",
        "--lr_img", "0.2", "--net_decay", "--embed_last", "100", "--syn_ce", "--ce_weight", "3", "--train_net_num", "1",
        "--net_generate_interval", "50", "--net_num", "50", "--nclass", str(CLASSES), "--phase", "0", "--dseed", "1",
        "--size", "64", "--num_exp", "1", "--Iteration", "2", "--eval_interval", "100", "--batch_real", str(BATCH),
        "--model_train_steps", "1", "--batch_train", "8"]
LAUNCHER = ("--threads", "1", "--cuda-to-cpu")
RESULT = "res_DM_imagenet_subset_ConvNet_6_1ipc.pt"


class IDMImageNet:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = write_tree(root / "imagenet", CLASSES, PER_CLASS)
        self.trees = {"compat": materialise("idm", root / "compat", upto=1),
                      "patched": materialise("idm", root / "patched")}
        self.scores = root / "scores.npz"
        assert main(["score", "--dataset", "imagefolder", "--data-root", str(self.data / "train"), "--epochs", "1",
                     "--width", "8", "--image-size", "16", "--out", str(self.scores)]) == 0
        self.runs: dict[str, Path] = {}

    def run(self, name: str, tree: str, *flags: str) -> Path:
        if name not in self.runs:
            cwd = self.root / "runs" / name
            cwd.mkdir(parents=True)
            launch(self.trees[tree] / "IDM_imagenet.py", [*ARGS, "--data_path", str(self.data), "--save_path",
                                                          str(cwd / "res"), *flags], cwd, launcher_flags=LAUNCHER)
            self.runs[name] = cwd
        return self.runs[name]

    def images(self, name: str) -> torch.Tensor:
        return torch.load(self.runs[name] / "res" / RESULT, weights_only=False)["data"][0][0]


@pytest.fixture(scope="module")
def idm(tmp_path_factory: pytest.TempPathFactory) -> IDMImageNet:
    pytest.importorskip("kornia", reason="IDM's utils.py imports kornia: pip install -e '.[upstreams]'")
    return IDMImageNet(tmp_path_factory.mktemp("idm_imagenet"))


def test_patched_without_bilp_and_inert_bilp_are_the_compat_run(idm: IDMImageNet) -> None:
    idm.run("compat", "compat")
    baseline = idm.images("compat")
    assert baseline.shape == (CLASSES, 3, 64, 64)
    idm.run("patched", "patched")
    assert torch.equal(idm.images("patched"), baseline)
    record = idm.run("inert", "patched", "--bilp", "--bilp-alpha", "0", "--bilp-beta", "0", "--bilp-out",
                     "bilp") / "bilp"
    assert torch.equal(idm.images("inert"), baseline)
    assert json.loads((record / "config.json").read_text())["upstream"] == "idm"
    assert not (record / "level1.json").exists() and not (record / "level2.jsonl").exists()


def test_level1_keeps_the_lowest_scores_of_the_files_idm_reads(idm: IDMImageNet) -> None:
    record = idm.run("level1", "patched", "--bilp", "--bilp-alpha", str(ALPHA), "--bilp-scores", str(idm.scores),
                     "--bilp-out", "bilp") / "bilp"
    kept_per_class = int(PER_CLASS - np.floor(ALPHA * PER_CLASS))
    level1 = json.loads((record / "level1.json").read_text())
    assert level1["kept_per_class"] == [kept_per_class] * CLASSES and "files_sha256" in level1["scores_meta"]
    with np.load(idm.scores) as z:
        scores, labels = z["scores"], z["labels"]
    expected = np.sort(np.concatenate([idx[np.argsort(scores[idx], kind="stable")[:kept_per_class]]
                                       for idx in (np.flatnonzero(labels == c) for c in range(CLASSES))]))
    assert np.array_equal(np.load(record / "kept_indices.npy"), expected)
    idm.run("compat", "compat")
    assert not torch.equal(idm.images("level1"), idm.images("compat"))


def test_level2_selects_every_other_draw_of_each_class(idm: IDMImageNet) -> None:
    record = idm.run("level2", "patched", "--bilp", "--bilp-beta", str(BETA), "--bilp-interval", str(INTERVAL),
                     "--bilp-out", "bilp") / "bilp"
    rows = [json.loads(line) for line in (record / "level2.jsonl").read_text().splitlines()]
    # 3 iterations x 1 network: each class drawn 3 times, selected on draws 0 and 2
    assert sorted((r["class"], r["draw"]) for r in rows) == [(c, d) for c in range(CLASSES) for d in (0, 2)]
    assert all(r["batch"] == BATCH and 1 <= r["kept"] <= BATCH and r["ite_s"] > 0 for r in rows)
    assert sum(r["kept"] for r in rows) < sum(r["batch"] for r in rows)
    summary = json.loads((record / "summary.json").read_text())
    assert summary["draws"] == 3 * CLASSES and summary["selections"] == 2 * CLASSES
    assert 0 < summary["ite_s"] < summary["matching_loop_s"]
