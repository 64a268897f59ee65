"""DatasetCondensation patched with BiLP, on real MNIST: parity with the unpatched upstream, level 1 with the
authors' score file, level 2, and errors before training.

Tiny configurations: ConvNet of width 32, ipc 1, 3 iterations, ``--batch_real 16``, one experiment. The
upstream trains 1000 epochs per evaluated model on MNIST whatever ``--epoch_eval_train`` says (DC, DSA), so runs
pass ``--num_eval 0``: no model is evaluated, and the synthetic set the script saves is compared, bit for bit.

Needs the submodule and ``BILP_DATA`` (MNIST); the level-1 tests also need the authors' score files in
``BILP_SCORES_DIR`` (``MNIST_LossConverge.json``, ``CIFAR10_LossConverge.json``). Each skips visibly otherwise.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from upstreams import launch, materialise

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("dc_probe.py")
TINY = ["--dataset", "MNIST", "--model", "ConvNetW32", "--ipc", "1", "--Iteration", "2", "--batch_real", "16",
        "--num_exp", "1", "--num_eval", "0"]
FULL_DSA = "color_crop_cutout_flip_scale_rotate"
CASES = {  # name: (script, arguments, whether the bare upstream runs it)
    "DC": ("main.py", [*TINY, "--method", "DC"], True),
    # the bare upstream's DiffAugment fails on one-image batches except for scale and rotate (compat patch)
    "DSA": ("main.py", [*TINY, "--method", "DSA", "--dsa_strategy", "scale_rotate"], True),
    "DM": ("main_DM.py", [*TINY, "--dsa_strategy", FULL_DSA, "--init", "real"], False),
}
RESULT = {case: f"res_{case}_MNIST_ConvNetW32_1ipc.pt" for case in CASES}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The upstream bare, with its compat patch, and with the whole series."""
    root = tmp_path_factory.mktemp("dc-trees")
    return {name: materialise("dc", root / name, upto) for name, upto in
            (("bare", 0), ("compat", 1), ("patched", None))}


@pytest.fixture(scope="module")
def scores_dir() -> Path:
    folder = os.environ.get("BILP_SCORES_DIR")
    if not folder:
        pytest.skip("BILP_SCORES_DIR not set: point it at the authors' score files (bilp-official-scores/)")
    path = Path(folder)
    if not (path / "MNIST_LossConverge.json").is_file():
        pytest.skip(f"BILP_SCORES_DIR={path} has no MNIST_LossConverge.json")
    return path


def run(tree: Path, case: str, cwd: Path, data: Path, extra: list[str] = ()) -> torch.Tensor:
    """Run one case in ``cwd``; the synthetic images the script saved."""
    script, args, _ = CASES[case]
    cwd.mkdir(parents=True)
    launch(tree / script, [*args, "--data_path", str(data), "--save_path", "out", *extra], cwd=cwd)
    saved = torch.load(cwd / "out" / RESULT[case], weights_only=False)
    return saved["data"][0][0]


def fails(tree: Path, script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a script that must fail (in ``cwd``/run); its completed process."""
    cwd = cwd / "run"
    cwd.mkdir()
    cmd = [sys.executable, "-m", "bilp_plugin", "launch", "--seed", "0", "--fake-clock", "--threads", "2",
           str(tree / script), "--", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 2, f"{' '.join(cmd)} should have failed with status 2:\n{proc.stdout[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]  # one line, as argparse does
    assert "training begins" not in proc.stdout, "the error must come before training"
    assert not (cwd / "out").exists() or not any((cwd / "out").glob("res_*.pt"))
    return proc


def records(cwd: Path) -> tuple[dict, list[dict]]:
    record = cwd / "record"
    rows = [json.loads(line) for line in (record / "level2.jsonl").read_text().splitlines()]
    return json.loads((record / "summary.json").read_text()), rows


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize("case", list(CASES))
def test_patched_without_bilp_and_inert_bilp_reproduce_the_upstream(trees: dict[str, Path], case: str,
                                                                     mnist_root: Path, tmp_path: Path) -> None:
    """Bare (where it runs), compat-only, patched without --bilp, and patched with --bilp alpha 0 beta 0 save
    bit-identical synthetic sets."""
    reference = run(trees["compat"], case, tmp_path / "compat", mnist_root)
    others = {"patched": run(trees["patched"], case, tmp_path / "patched", mnist_root),
              "inert bilp": run(trees["patched"], case, tmp_path / "inert", mnist_root,
                                ["--bilp", "--bilp-alpha", "0", "--bilp-beta", "0", "--bilp-out", "record"])}
    if CASES[case][2]:
        others["bare"] = run(trees["bare"], case, tmp_path / "bare", mnist_root)
    for name, images in others.items():
        assert torch.equal(images, reference), f"{case}: {name} differs from the compat-only upstream"
    record = tmp_path / "inert" / "record"
    assert (record / "config.json").is_file() and (record / "summary.json").is_file()
    assert not (record / "level1.json").exists() and not (record / "level2.jsonl").exists()


# ------------------------------------------------------------------------------------------------ level 1
def test_level1_keeps_the_authors_lowest_scores_and_draws_nothing_else(
        trees: dict[str, Path], scores_dir: Path, mnist_root: Path, tmp_path: Path) -> None:
    """alpha 0.9 with the authors' MNIST file: the record's per-class counts and indices are the rule's, and every
    pool ``get_images`` draws from (real init and all matching batches) lies inside the kept set."""
    import torchvision

    scores = np.asarray(json.loads((scores_dir / "MNIST_LossConverge.json").read_text()))
    labels = torchvision.datasets.MNIST(str(mnist_root), train=True).targets.numpy()
    expected = np.sort(np.concatenate([
        idx[np.argsort(scores[idx], kind="stable")[:len(idx) - math.floor(0.9 * len(idx))]]
        for idx in (np.flatnonzero(labels == c) for c in range(10))]))

    cwd, probe_out = tmp_path / "run", tmp_path / "probe.json"
    cwd.mkdir()
    script, args, _ = CASES["DC"]
    cmd = [sys.executable, str(PROBE), str(probe_out), "--seed", "0", "--fake-clock", "--threads", "2",
           str(trees["patched"] / script), "--", *args, "--init", "real", "--data_path", str(mnist_root),
           "--save_path", "out", "--bilp", "--bilp-alpha", "0.9", "--bilp-scores",
           str(scores_dir / "MNIST_LossConverge.json"), "--bilp-out", "record"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]

    level1 = json.loads((cwd / "record" / "level1.json").read_text())
    counts = np.bincount(labels, minlength=10)
    assert level1["kept_per_class"] == [int(n - math.floor(0.9 * n)) for n in counts]
    assert np.array_equal(np.load(cwd / "record" / "kept_indices.npy"), expected)
    assert f"class c = 0: {counts[0] - math.floor(0.9 * counts[0])} real images" in proc.stdout
    probe = json.loads(probe_out.read_text())
    assert probe["calls"] == 10 * (1 + 3)  # real init, then 3 iterations x 10 classes
    assert set(probe["indices"]) <= set(expected.tolist())
    assert probe["indices"] == expected.tolist()  # the pools are exactly the kept lists


# ------------------------------------------------------------------------------------------------ level 2
@pytest.fixture(scope="module", params=["DC", "DSA", "DM"])
def level2_run(request: pytest.FixtureRequest, trees: dict[str, Path], mnist_root: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[str, torch.Tensor, dict, list[dict]]:
    """One level-2 run of each case, for the tests below: beta 0.2, 30 iterations, every iteration a fresh network,
    a selection at every draw (310 selections of 16 rows); DSA runs its full augmentation strategy. (The reuse of
    the kept batch between selections, ``--bilp-interval``, is tests/test_adaptive.py's.)"""
    case = request.param
    cwd = tmp_path_factory.mktemp(f"level2-{case}") / "run"
    extra = ["--dsa_strategy", FULL_DSA] if case == "DSA" else []
    images = run(trees["patched"], case, cwd, mnist_root,
                 [*extra, "--Iteration", "30", "--bilp", "--bilp-beta", "0.2", "--bilp-interval", "1", "--bilp-out",
                  "record"])
    return (case, images, *records(cwd))


def test_level2_prunes_about_beta_and_records_ite_timings(level2_run: tuple[str, torch.Tensor, dict, list[dict]]
                                                           ) -> None:
    """Every draw of every class is a selection of the drawn batch, with its ITE seconds in the record."""
    case, images, summary, rows = level2_run
    assert torch.isfinite(images).all()
    assert summary["draws"] == 310 and summary["selections"] == 310 == len(rows), case
    assert {row["draw"] for row in rows} == set(range(31)) and {row["class"] for row in rows} == set(range(10))
    assert all(row["batch"] == 16 and 1 <= row["kept"] <= 16 for row in rows)
    assert all(row["ite_s"] > 0 for row in rows) and summary["ite_s"] > 0 and summary["ite_share"] > 0


def test_level2_keeps_one_minus_beta_of_the_real_rows(level2_run: tuple[str, torch.Tensor, dict, list[dict]]
                                                      ) -> None:
    """The default rule keeps 1 - beta of the rows of a whole run (within 3 points), although every iteration
    draws a fresh network."""
    case, _, summary, rows = level2_run
    assert summary["rule"] == "relative" and summary["selections"] == len(rows) == 310, case
    assert abs(summary["kept_rows"] / summary["rows"] - 0.8) <= 0.03, summary


def small_mnist(source: Path, dest: Path, train: int, test: int) -> Path:
    """The first samples of MNIST's idx files, in the same layout (a real subset, quick to load)."""
    (dest / "MNIST" / "raw").mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, header, size in (("images-idx3", 16, 28 * 28), ("labels-idx1", 8, 1)):
            data = (source / "MNIST" / "raw" / f"{prefix}-{kind}-ubyte").read_bytes()
            head = data[:4] + n.to_bytes(4, "big") + data[8:header]
            (dest / "MNIST" / "raw" / f"{prefix}-{kind}-ubyte").write_bytes(head + data[header:header + n * size])
    return dest


def test_host_reads_the_accuracies_of_a_real_result_file_without_pickled_code(
        trees: dict[str, Path], mnist_root: Path, tmp_path: Path) -> None:
    """``--host dc`` reads the file the upstream saves with ``weights_only=True``: numpy's float scalars (the
    accuracies) are the only objects it allows, and they are all such a file holds besides tensors."""
    from bilp_plugin.lab.launched import read_accuracies

    data = small_mnist(mnist_root, tmp_path / "data", train=100, test=50)
    cwd = tmp_path / "run"
    cwd.mkdir()
    launch(trees["patched"] / "main_DM.py", ["--dataset", "MNIST", "--model", "ConvNet", "--ipc", "1",
                                             "--Iteration", "0", "--num_exp", "1", "--num_eval", "2",
                                             "--epoch_eval_train", "1", "--eval_mode", "S", "--batch_real", "16",
                                             "--data_path", str(data), "--save_path", "out"], cwd=cwd)
    file = cwd / "out" / "res_DM_MNIST_ConvNet_1ipc.pt"  # the file --host dc reads
    accs = read_accuracies(file)["ConvNet"]
    assert len(accs) == 2 and all(0.0 <= a <= 1.0 for a in accs)
    with pytest.raises(Exception, match="numpy"):  # without the allow-list torch refuses the numpy scalars
        torch.load(file, weights_only=True)


# ------------------------------------------------------------------------------------------------ errors
def test_score_file_of_another_dataset_is_refused_before_training(trees: dict[str, Path], scores_dir: Path,
                                                                 mnist_root: Path, tmp_path: Path) -> None:
    other = scores_dir / "CIFAR10_LossConverge.json"
    if not other.is_file():
        pytest.skip(f"BILP_SCORES_DIR={scores_dir} has no CIFAR10_LossConverge.json")
    script, args, _ = CASES["DC"]
    proc = fails(trees["patched"], script, [*args, "--data_path", str(mnist_root), "--save_path", "out", "--bilp",
                                            "--bilp-alpha", "0.5", "--bilp-scores", str(other)], tmp_path)
    assert "has 50000 scores but the dataset MNIST has 60000 samples" in proc.stderr


def test_alpha_out_of_range_is_refused_by_the_parser(trees: dict[str, Path], mnist_root: Path,
                                                    tmp_path: Path) -> None:
    script, args, _ = CASES["DC"]
    proc = fails(trees["patched"], script, [*args, "--data_path", str(mnist_root), "--bilp", "--bilp-alpha", "1.2"],
                 tmp_path)
    assert "--bilp-alpha must be in [0, 1), got 1.2" in proc.stderr


def test_level2_with_dm_batchnorm_is_refused_before_training(trees: dict[str, Path], mnist_root: Path,
                                                            tmp_path: Path) -> None:
    script, args, _ = CASES["DM"]
    proc = fails(trees["patched"], script, [*args, "--model", "ConvNetBN", "--data_path", str(mnist_root),
                                            "--save_path", "out", "--bilp", "--bilp-beta", "0.2"], tmp_path)
    assert "cannot run DM with --model ConvNetBN" in proc.stderr
