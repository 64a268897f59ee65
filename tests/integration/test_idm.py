"""IDM's ``IDM_cifar10.py`` end to end on CPU (one thread): bare, patched, and patched with ``--bilp``, on a small
CIFAR-10. Only the bare script has ``tests/stubs`` (a ``torchnet`` for its unconditional import) on its path: the
patched ones take the adapter's copy of torchnet's meter through the compat patch, as a user's install does.

The configuration is the published ipc-1 command of IDM's ``command.txt`` (``--aug``, ``--syn_ce``, ...) shrunk
for two CPU cores: 3 iterations plus a 2-epoch evaluation, small real and net-training batches, on the first 100
images of each training batch of ``BILP_DATA``'s CIFAR-10 (500 images, about 50 per class) and 200 test images.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from upstreams import launch, materialise

pytestmark = pytest.mark.integration

SCRIPT = "IDM_cifar10.py"
STUBS = Path(__file__).resolve().parent.parent / "stubs"
TRAIN_PER_BATCH, TEST = 100, 200
PUBLISHED = ["--dataset", "CIFAR10", "--model", "ConvNet", "--ipc", "1", "--dsa_strategy",
             "color_crop_cutout_flip_scale_rotate", "--init", "real", "--lr_img", "0.2", "--net_train_real",
             "--outer_loop", "1", "--mismatch_lambda", "0", "--net_decay", "--embed_last", "1000", "--syn_ce",
             "--ce_weight", "0.5", "--train_net_num", "1", "--net_generate_interval", "5", "--aug"]
SHRUNK = ["--num_exp", "1", "--num_eval", "1", "--Iteration", "3", "--eval_interval", "3", "--epoch_eval_train", "2",
          "--batch_real", "32", "--trained_bs", "64", "--model_train_steps", "2"]
RESULT = "res_DM_CIFAR10_ConvNet_1ipc.pt"


@pytest.fixture(scope="module")
def small_cifar(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``cifar-10-batches-py`` layout with the first rows of each of ``BILP_DATA``'s batches."""
    root = tmp_path_factory.mktemp("cifar")
    src, dst = cifar10_root / "cifar-10-batches-py", root / "cifar-10-batches-py"
    dst.mkdir()
    shutil.copy(src / "batches.meta", dst / "batches.meta")
    for name, n in [*((f"data_batch_{i}", TRAIN_PER_BATCH) for i in range(1, 6)), ("test_batch", TEST)]:
        with open(src / name, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        small = {"batch_label": batch["batch_label"], "labels": batch["labels"][:n], "data": batch["data"][:n],
                 "filenames": batch["filenames"][:n]}
        with open(dst / name, "wb") as f:
            pickle.dump(small, f)
    return root


def train_labels(root: Path) -> np.ndarray:
    labels: list[int] = []
    for i in range(1, 6):
        with open(root / "cifar-10-batches-py" / f"data_batch_{i}", "rb") as f:
            labels += pickle.load(f, encoding="latin1")["labels"]
    return np.asarray(labels)


def run(tree: Path, cwd: Path, data: Path, extra: list[str] = (), stubs: bool = False) -> tuple[torch.Tensor, str]:
    """Launch the script reproducibly in ``cwd``; its final synthetic images and its stdout."""
    (cwd / "checkpoints").mkdir(parents=True)
    proc = launch(tree / SCRIPT, [*PUBLISHED, *SHRUNK, "--data_path", str(data), "--save_path", str(cwd / "res"),
                                  *extra], cwd, extra_env={"PYTHONPATH": str(STUBS)} if stubs else None,
                  launcher_flags=("--skip-cifar-integrity", "--threads", "1"))
    saved = torch.load(cwd / "res" / RESULT, weights_only=False)
    return saved["data"][0][0], proc.stdout


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("kornia", reason="IDM's utils.py imports kornia: pip install -e '.[upstreams]'")
    base = tmp_path_factory.mktemp("idm")
    return {"bare": materialise("idm", base / "bare", upto=0), "patched": materialise("idm", base / "patched")}


@pytest.fixture(scope="module")
def baseline(trees: dict[str, Path], small_cifar: Path, tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    return run(trees["bare"], tmp_path_factory.mktemp("bare-run"), small_cifar, stubs=True)[0]


def test_patched_without_bilp_is_the_bare_run(trees, small_cifar, baseline, tmp_path: Path) -> None:
    images, _ = run(trees["patched"], tmp_path, small_cifar)
    assert images.shape == (10, 3, 32, 32)
    assert torch.equal(images, baseline)


def test_bilp_with_alpha_and_beta_zero_is_the_bare_run(trees, small_cifar, baseline, tmp_path: Path) -> None:
    out = tmp_path / "record"
    images, _ = run(trees["patched"], tmp_path / "cwd", small_cifar,
                    ["--bilp", "--bilp-alpha", "0", "--bilp-beta", "0", "--bilp-out", str(out)])
    assert torch.equal(images, baseline)
    assert json.loads((out / "config.json").read_text())["upstream"] == "idm"
    assert not (out / "level1.json").exists() and not (out / "level2.jsonl").exists()


def test_both_levels_record_kept_counts_keep_rates_and_ite_timings(trees, small_cifar, baseline,
                                                                   tmp_path: Path) -> None:
    labels = train_labels(small_cifar)
    scores = np.random.default_rng(0).random(len(labels))
    (tmp_path / "scores.json").write_text(json.dumps(scores.tolist()))
    out = tmp_path / "record"
    images, stdout = run(trees["patched"], tmp_path / "cwd", small_cifar,
                         ["--bilp", "--bilp-alpha", "0.2", "--bilp-scores", str(tmp_path / "scores.json"),
                          "--bilp-beta", "0.4", "--bilp-interval", "2", "--bilp-out", str(out)])
    assert not torch.equal(images, baseline)

    level1 = json.loads((out / "level1.json").read_text())
    counts = np.bincount(labels, minlength=10)
    expected = [int(n - np.floor(0.2 * n)) for n in counts]
    assert level1["kept_per_class"] == expected
    printed = [int(n) for n in re.findall(r"class c = \d+: (\d+) real images", stdout)]
    assert printed == expected  # the script itself sees the pruned set
    kept = np.load(out / "kept_indices.npy")
    for c in range(10):
        members = np.flatnonzero(labels == c)
        lowest = members[np.argsort(scores[members], kind="stable")[:expected[c]]]
        assert np.array_equal(np.sort(lowest), kept[labels[kept] == c])

    rows = [json.loads(line) for line in (out / "level2.jsonl").read_text().splitlines()]
    # 4 iterations x 1 net: each class is drawn 4 times, selected on draws 0 and 2 (interval 2)
    assert sorted((r["class"], r["draw"]) for r in rows) == [(c, d) for c in range(10) for d in (0, 2)]
    assert all(r["batch"] == min(32, expected[r["class"]]) and 1 <= r["kept"] <= r["batch"] and r["ite_s"] > 0
               for r in rows)
    assert sum(r["kept"] for r in rows) < sum(r["batch"] for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["selections"] == 20 and summary["draws"] == 40
    assert 0 < summary["ite_s"] < summary["matching_loop_s"]


def test_level2_keeps_one_minus_beta_of_the_real_rows(trees, small_cifar, tmp_path: Path) -> None:
    """The default rule keeps 1 - beta of the rows over the run (within 3 points) although IDM rotates a queue of
    networks and its classes differ in ITE scale: 10 iterations, a selection at every draw (110 of 32 rows)."""
    out = tmp_path / "record"
    run(trees["patched"], tmp_path / "cwd", small_cifar,
        ["--Iteration", "10", "--eval_interval", "10", "--bilp", "--bilp-beta", "0.2", "--bilp-interval", "1",
         "--bilp-out", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rule"] == "relative" and summary["selections"] == 110
    assert abs(summary["kept_rows"] / summary["rows"] - 0.8) <= 0.03, summary
