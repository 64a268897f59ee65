"""``benchmarks/planted_rows.py`` plants what it says and counts tails; ``benchmarks/level2_doc.py`` turns planted
rows, an ablation with the random control and cost tables into ``docs/level2.md`` (tiny synthetic inputs)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

from bilp_plugin.method.realset import RealSet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import level2_doc  # noqa: E402
import planted_rows  # noqa: E402


def _data() -> RealSet:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(40)
    images = torch.randn(120, 1, 8, 8, generator=gen) + labels.view(-1, 1, 1, 1)
    return RealSet("toy", images, labels, 3, (0.0,), (1.0,))


def test_planted_rows_are_the_first_rows_of_their_kind() -> None:
    data, gen = _data(), torch.Generator().manual_seed(1)
    scores = torch.arange(120, dtype=torch.float64)
    hardest, easiest = planted_rows.deciles(scores, data.labels, 1)
    assert hardest.tolist() == [79, 78, 77, 76] and easiest.tolist() == [43, 42, 41, 40]
    real, labels = planted_rows.plant(data, (hardest, easiest), 1, "mislabeled", 10, 3, gen)
    assert labels.tolist() == [1] * 10
    first = [int((data.images == row).all(-1).all(-1).all(-1).nonzero()[0]) for row in real[:3]]
    assert all(data.labels[i] != 1 for i in first)
    real, _ = planted_rows.plant(data, (hardest, easiest), 1, "hardest", 10, 3, gen)
    assert all(bool((data.images[hardest] == row).all(-1).all(-1).all(-1).any()) for row in real[:3])
    small, large = planted_rows.tails(torch.tensor([3.0, 1.0, 2.0, 0.0]), 1)
    assert small.tolist() == [False, False, False, True] and large.tolist() == [True, False, False, False]


def test_measure_counts_every_planted_row_once_per_scorer() -> None:
    args = argparse.Namespace(width=4, batch=10, beta=0.4, classes=2, planted=3, train_steps=2, dataset="toy")
    out = planted_rows.measure(args, _data(), torch.arange(120, dtype=torch.float64), 0, lambda line: None)
    assert out["tail"] == 2
    for state in planted_rows.STATES:
        counts = out["states"][state]["counts"]
        assert set(counts) == {*planted_rows.LOSSES, *planted_rows.PROXIES}
        for kinds in counts.values():
            for c in kinds.values():
                assert c["planted"] == 6 and 0 <= c["small"] + c["large"] <= 6
        agreement = out["states"][state]["agreement"]["feature-dist|dm"]
        assert agreement["dropped"] == 2 * 2 * 5 * 2 and len(agreement["rho"]) == 10


def _point(folder: Path, setting: str, seed: int, acc: float) -> None:
    record = {"selections": 1, "rows": 100, "kept_rows": 80, "ite_s": 0.0 if setting == "random" else 1.0,
              "matching_loop_s": 10.0}
    result = {"accuracy": [acc, acc + 0.002], "real_kept": 5, "real_total": 50, "distill_s": 10.0, "eval_s": 1.0}
    (folder / "points" / f"{setting}-s{seed}.json").write_text(json.dumps(
        {"point": {"name": f"{setting}-s{seed}"}, "result": result,
         "record": record if setting in ("small", "large", "both", "random") else None}))


def test_the_document_compares_with_the_control_and_reads_the_cost(tmp_path: Path) -> None:
    ablate = tmp_path / "ablate-cifar10-DM-ipc1"
    (ablate / "points").mkdir(parents=True)
    (ablate / "ablate.json").write_text(json.dumps(
        {"host": "dc", "method": "DM", "dataset": "cifar10", "ipc": 1, "iterations": 200, "batch_real": 64,
         "eval_models": 2, "eval_epochs": 300, "scores": "/x/CIFAR10_LossConverge.json", "alpha": 0.9, "beta": 0.2}))
    for seed, noise in enumerate((-0.001, 0.0, 0.001)):
        for setting, acc in {"none": 0.25, "level1": 0.28, "small": 0.28, "large": 0.28, "both": 0.30,
                             "random": 0.28}.items():
            _point(ablate, setting, seed, acc + noise)
    cost = tmp_path / "cost"
    cost.mkdir()
    (cost / "dm-b256.md").write_text(
        "$ python benchmarks/bench_overhead.py --run dm -- --batch_real 256\n## dm: main_DM.py --x\nsetup\n\n"
        "| variant | s/unit | ITE s/unit | ITE / iter | total / iter | ITE / run | peak MiB | keep |\n"
        "|---|---|---|---|---|---|---|---|\n"
        "| unpatched | 0.4000 | - | - | 1.000 | - | 9 | - |\n"
        "| exact k=1 | 3.4000 | 3.0000 | 750.0% | 8.500 | 5.0% | 9 | 0.800 |\n"
        "| exact k=10 | 0.7000 | 0.3000 | 75.0% | 1.750 | 5.0% | 9 | 0.800 |\n")
    out = tmp_path / "level2.md"
    assert level2_doc.main(["--ablate", str(ablate), "--cost", str(cost), "--out", str(out)]) == 0
    text = out.read_text()
    both_vs_control = ("| level 1 + prune both (BiLP) - level 1 + drop beta at random (control) | +2.0 ± 0.1 "
                       "(resolved) | - |")
    assert both_vs_control in text
    assert "full BiLP beat dropping the same share at random beyond noise for DM" in text
    assert "| level 1 only | 28.1 ± 0.1 (se 0.1) | - | - | 51.0 ± 0.3 |" in text
    assert "| dm | 256 | 0.400 | 750.0% | 75.0% | - | - | 75 / - |" in text
    with pytest.raises(SystemExit):
        level2_doc.main(["--bogus"])
