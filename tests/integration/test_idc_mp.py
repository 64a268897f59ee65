"""IDC's multi-process ImageNet script ``condense_mp.py`` patched with BiLP, on a fake ImageNet tree this module
writes (6 classes of 6 tiny PNGs, resized to 224 by IDC), on the CPU (``--cuda-to-cpu``).

Tiny configuration: ``-d imagenet --nclass 6 --dseed 1`` (all 6 classes, in IDC's permuted label order), one class
per process (``--nclass_sub 1 --phase 1``: class 1, row 0 of the synthetic set), ipc 1, factor 1, ResNet-AP-10 of
width 1/16, ``--niter 1 --inner_loop 2`` (50 outer iterations, the fewest IDC accepts), no network update
(``--n_data 0``), ``--test`` (no evaluation). "compat" is the upstream with its compat patch only (the bare one
cannot run here: module-level ``efficientnet_pytorch`` import; its class loader fails on classes under 64 images),
"patched" the whole series. Level-1 scores: ``bilp score --dataset imagefolder`` on the tree.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import write_tree
from upstreams import launch, materialise

from bilp_plugin.cli import main
from bilp_plugin.lab import folders
from bilp_plugin.method import scorefile

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLASSES, PER_CLASS, ALPHA, BETA, INTERVAL = 6, 6, 0.5, 0.3, 10
ARGS = ["-d", "imagenet", "--nclass", str(CLASSES), "--dseed", "1", "--nclass_sub", "1", "--phase", "1",
        "--ipc", "1", "-f", "1", "--niter", "1", "--inner_loop", "2", "--width", "0.0625", "--depth", "10",
        "--n_data", "0", "--batch_size", "8", "--workers", "0", "--test"]
LAUNCHER = ("--threads", "1", "--cuda-to-cpu")
DRAWS = 50 * 2  # outer iterations x inner loop, of the process's one class


class IDCMP:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = write_tree(root / "imagenet", CLASSES, PER_CLASS)
        self.trees = {"compat": materialise("idc", root / "compat", upto=1),
                      "patched": materialise("idc", root / "patched")}
        self.scores = root / "scores.npz"
        assert main(["score", "--dataset", "imagefolder", "--data-root", str(self.data / "train"), "--epochs", "1",
                     "--width", "8", "--image-size", "16", "--out", str(self.scores)]) == 0
        self.runs: dict[str, Path] = {}

    def run(self, name: str, tree: str, *flags: str) -> Path:
        if name not in self.runs:
            cwd = self.root / "runs" / name
            cwd.mkdir(parents=True)
            launch(self.trees[tree] / "condense_mp.py", [*ARGS, "--imagenet_dir", str(self.data), *flags], cwd,
                   launcher_flags=LAUNCHER)
            self.runs[name] = cwd
        return self.runs[name]

    def condensed(self, name: str) -> list[torch.Tensor]:
        return torch.load(self.runs[name] / "results" / "test" / "data.pt")


@pytest.fixture(scope="module")
def idc(tmp_path_factory: pytest.TempPathFactory) -> IDCMP:
    return IDCMP(tmp_path_factory.mktemp("idc_mp"))


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_patched_without_bilp_and_inert_bilp_are_the_compat_run(idc: IDCMP) -> None:
    idc.run("compat", "compat")
    baseline = idc.condensed("compat")
    assert baseline[0].shape == (1, 3, 224, 224) and baseline[1].tolist() == [1]
    idc.run("patched", "patched")
    assert _same(idc.condensed("patched"), baseline)
    record = idc.run("inert", "patched", "--bilp", "--bilp-alpha", "0", "--bilp-beta", "0", "--bilp-out",
                     "bilp") / "bilp"
    assert _same(idc.condensed("inert"), baseline)
    assert json.loads((record / "config.json").read_text())["upstream"] == "idc"
    assert not (record / "level1.json").exists() and not (record / "level2.jsonl").exists()


def test_level1_keeps_the_lowest_scores_of_the_files_idc_reads(idc: IDCMP) -> None:
    record = idc.run("level1", "patched", "--bilp", "--bilp-alpha", str(ALPHA), "--bilp-scores", str(idc.scores),
                     "--bilp-out", "bilp") / "bilp"
    level1 = json.loads((record / "level1.json").read_text())
    kept_per_class = int(PER_CLASS - np.floor(ALPHA * PER_CLASS))
    assert level1["kept_per_class"] == [kept_per_class] * CLASSES and level1["kept"] == CLASSES * kept_per_class
    files, _, _ = folders.image_files(idc.data / "train")
    assert level1["scores_meta"]["files_sha256"] == scorefile.files_sha256(files)
    with np.load(idc.scores) as z:
        scores, labels = z["scores"], z["labels"]  # labels by sorted folder; IDC numbers them otherwise
    expected = np.sort(np.concatenate([idx[np.argsort(scores[idx], kind="stable")[:kept_per_class]]
                                       for idx in (np.flatnonzero(labels == c) for c in range(CLASSES))]))
    assert np.array_equal(np.load(record / "kept_indices.npy"), expected)
    idc.run("compat", "compat")
    assert not _same(idc.condensed("level1"), idc.condensed("compat"))


def test_level2_selects_on_the_process_class(idc: IDCMP) -> None:
    record = idc.run("level2", "patched", "--bilp", "--bilp-beta", str(BETA), "--bilp-interval", str(INTERVAL),
                     "--bilp-ite", "taylor", "--bilp-out", "bilp") / "bilp"
    rows = [json.loads(line) for line in (record / "level2.jsonl").read_text().splitlines()]
    assert [r["draw"] for r in rows] == list(range(0, DRAWS, INTERVAL)) and {r["class"] for r in rows} == {1}
    assert all(r["batch"] == PER_CLASS and 1 <= r["kept"] <= PER_CLASS and r["ite_s"] > 0 for r in rows)
    assert sum(r["kept"] for r in rows) < sum(r["batch"] for r in rows)
    summary = json.loads((record / "summary.json").read_text())
    assert summary["draws"] == DRAWS and summary["selections"] == len(rows)
    assert 0 < summary["ite_s"] < summary["matching_loop_s"]


def test_level1_refuses_scores_of_other_files_before_any_work(idc: IDCMP, tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    assert main(["score", "--dataset", "imagefolder", "--data-root", str(idc.data / "train"), "--classes",
                 "n00000000,n00000001", "--epochs", "1", "--width", "8", "--image-size", "8", "--out",
                 str(other)]) == 0
    cmd = [sys.executable, "-m", "bilp_plugin", "launch", *LAUNCHER, str(idc.trees["patched"] / "condense_mp.py"),
           "--", *ARGS, "--imagenet_dir", str(idc.data), "--bilp", "--bilp-alpha", "0.5", "--bilp-scores",
           str(other)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("bilp: error:")]
    assert len(errors) == 1 and "other files, or in another order" in errors[0] and "--classes" in errors[0]
    assert not (tmp_path / "results" / "test" / "data.pt").exists()


@pytest.mark.parametrize("script", ["train.py", "test.py"])
def test_scripts_without_bilp_calls_refuse_the_flag(idc: IDCMP, tmp_path: Path, script: str) -> None:
    """They import argument.py, which parses --bilp: one line naming the scripts that run BiLP, exit 2."""
    cmd = [sys.executable, "-m", "bilp_plugin", "launch", *LAUNCHER, str(idc.trees["patched"] / script), "--",
           "-d", "cifar10", "--data_dir", str(tmp_path), "--bilp", "--bilp-alpha", "0.5"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (f"bilp: error: {script} parses IDC's --bilp flags (argument.py) "
                                                    "but runs no BiLP: only condense.py and condense_mp.py do; drop "
                                                    "--bilp here")
    assert not (tmp_path / "results").exists()
