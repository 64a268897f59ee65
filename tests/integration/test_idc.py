"""IDC (``condense.py``) patched with BiLP, on a 40-per-class CIFAR-10 subset of ``BILP_DATA``, through IDC's own
loader (torchvision's ``CIFAR10``, md5 check skipped) on the CPU (``--cuda-to-cpu``).

Tiny configuration: ipc 1, factor 2, ConvNet-3 of width 8, ``--niter 1 --inner_loop 2`` (50 outer iterations, the
fewest IDC accepts, 2 inner steps), real batches of 8, ``--test`` (no evaluation), ``--metric mse`` (IDC's CIFAR
preset). Every run is seeded the same way (``bilp launch --seed 0 --fake-clock --threads 1``) in its own
folder. "compat" is the upstream with its compat patch only, "patched" the whole series. The bare upstream does not
run here (module-level ``efficientnet_pytorch`` import, ``np.int`` on numpy 2), so the compat tree is the baseline.
Level-1 scores: a seeded made-up JSON list (the authors' file format) for the subset.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from upstreams import launch, materialise

from bilp_plugin.tools.layouts import FOLDER, write_cifar10_subset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_CLASS, TEST_PER_CLASS, ALPHA, BETA, BATCH = 40, 5, 0.5, 0.25, 8
ARGS = ["-d", "cifar10", "--ipc", "1", "-f", "2", "--niter", "1", "--inner_loop", "2", "--width", "0.0625",
        "--batch_real", str(BATCH), "--n_data", "16", "--batch_size", "8", "--metric", "mse", "--test"]
LAUNCHER = ("--threads", "1", "--cuda-to-cpu", "--skip-cifar-integrity")
DRAWS_PER_CLASS = 50 * 2  # outer iterations x inner loop


@dataclass
class Run:
    cwd: Path

    @property
    def condensed(self) -> list[torch.Tensor]:
        return torch.load(self.cwd / "results" / "test" / "data.pt")

    def record(self, name: str) -> dict:
        return json.loads((self.cwd / "bilp" / name).read_text())

    @property
    def selections(self) -> list[dict]:
        return [json.loads(line) for line in (self.cwd / "bilp" / "level2.jsonl").read_text().splitlines()]


class IDC:
    def __init__(self, root: Path, data: Path, scores: Path) -> None:
        self.root, self.data, self.scores = root, data, scores
        self.trees = {"compat": materialise("idc", root / "compat", upto=1),
                      "patched": materialise("idc", root / "patched")}
        self.runs: dict[str, Run] = {}

    def run(self, name: str, tree: str, *flags: str) -> Run:
        if name not in self.runs:
            cwd = self.root / "runs" / name
            cwd.mkdir(parents=True)
            launch(self.trees[tree] / "condense.py", [*ARGS, "--data_dir", str(self.data), *flags], cwd,
                   launcher_flags=LAUNCHER)
            self.runs[name] = Run(cwd)
        return self.runs[name]

    @property
    def labels(self) -> np.ndarray:
        parts = []
        for i in range(1, 6):
            with open(self.data / FOLDER / f"data_batch_{i}", "rb") as f:
                parts.append(pickle.load(f, encoding="latin1")["labels"])
        return np.concatenate(parts)


@pytest.fixture(scope="module")
def idc(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> IDC:
    root = tmp_path_factory.mktemp("idc")
    data = root / "data"
    write_cifar10_subset(cifar10_root, data, PER_CLASS, TEST_PER_CLASS)
    scores = root / "scores.json"
    scores.write_text(json.dumps(np.random.default_rng(0).random(10 * PER_CLASS).tolist()))
    return IDC(root, data, scores)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_patched_without_bilp_is_the_baseline(idc: IDC) -> None:
    baseline = idc.run("compat", "compat").condensed
    assert baseline[0].shape == (10, 3, 32, 32)
    assert _same(idc.run("patched", "patched").condensed, baseline)


def test_alpha_and_beta_zero_is_the_baseline(idc: IDC) -> None:
    run = idc.run("zero", "patched", "--bilp", "--bilp-alpha", "0", "--bilp-beta", "0", "--bilp-out", "bilp")
    assert _same(run.condensed, idc.run("compat", "compat").condensed)
    assert not (run.cwd / "bilp" / "level1.json").exists() and not (run.cwd / "bilp" / "level2.jsonl").exists()


def test_both_levels_record_kept_counts_keep_rates_and_ite_timings(idc: IDC) -> None:
    run = idc.run("both", "patched", "--bilp", "--bilp-alpha", str(ALPHA), "--bilp-beta", str(BETA),
                  "--bilp-scores", str(idc.scores), "--bilp-ite", "taylor", "--bilp-out", "bilp")
    # level 1: per class, the PER_CLASS * (1 - ALPHA) lowest scores
    level1 = run.record("level1.json")
    kept_per_class = int(PER_CLASS - np.floor(ALPHA * PER_CLASS))
    assert level1["kept_per_class"] == [kept_per_class] * 10 and level1["kept"] == 10 * kept_per_class
    scores, labels = np.array(json.loads(idc.scores.read_text())), idc.labels
    expected = np.sort(np.concatenate([idx[np.argsort(scores[idx], kind="stable")[:kept_per_class]]
                                       for idx in (np.flatnonzero(labels == c) for c in range(10))]))
    assert np.array_equal(np.load(run.cwd / "bilp" / "kept_indices.npy"), expected)
    # level 2: a selection every 10th draw of each class (lazy reuse in between), on the full real batch
    rows = run.selections
    assert len(rows) == 10 * DRAWS_PER_CLASS // 10
    assert sorted({r["draw"] for r in rows}) == list(range(0, DRAWS_PER_CLASS, 10))
    assert all(r["batch"] == BATCH and 1 <= r["kept"] <= BATCH and r["ite_s"] > 0 for r in rows)
    keep_rate = sum(r["kept"] for r in rows) / sum(r["batch"] for r in rows)
    assert 0.5 < keep_rate < 1.0, keep_rate
    summary = run.record("summary.json")
    assert summary["draws"] == 10 * DRAWS_PER_CLASS and summary["selections"] == len(rows)
    assert 0 < summary["ite_s"] < summary["matching_loop_s"]
    assert not _same(run.condensed, idc.run("compat", "compat").condensed)


def test_level2_keeps_one_minus_beta_of_the_real_rows(idc: IDC) -> None:
    """The default rule keeps 1 - beta of the rows over the run (within 3 points) although IDC re-initialises its
    network every few iterations: a selection at every draw (1000 selections of 8 rows)."""
    run = idc.run("keep", "patched", "--bilp", "--bilp-beta", "0.2", "--bilp-interval", "1", "--bilp-out", "bilp")
    summary = run.record("summary.json")
    assert summary["rule"] == "relative" and summary["selections"] == 10 * DRAWS_PER_CLASS
    assert abs(summary["kept_rows"] / summary["rows"] - 0.8) <= 0.03, summary
