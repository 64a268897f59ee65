"""Level 1 selection: direction, exact counts, ties, order, baselines, and the authors' kept set."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from bilp_plugin.method import level1
from bilp_plugin.errors import BiLPError


def test_largest_loss_is_pruned_per_class() -> None:
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    scores = np.array([0.1, 9.0, 5.0, 0.2, 0.3, 0.1, 7.0, 3.0])
    kept = level1.keep_lowest(scores, labels, alpha=0.5)
    assert kept.tolist() == [0, 3, 4, 5]  # class 0 keeps 0.1, 0.3; class 1 keeps 0.2, 0.1
    assert kept.dtype == np.int64


@pytest.mark.parametrize("n_c,alpha,expected", [(10, 0.9, 1), (7, 0.5, 4), (3, 0.9, 1), (1, 0.99, 1),
                                                (5000, 0.9, 500), (5, 0.0, 5), (4, 0.25, 3)])
def test_kept_count_is_n_minus_floor_alpha_n(n_c: int, alpha: float, expected: int) -> None:
    assert level1.kept_per_class(n_c, alpha) == expected
    labels = np.zeros(n_c, dtype=np.int64)
    assert len(level1.keep_lowest(np.arange(n_c, dtype=float), labels, alpha)) == expected


def test_small_and_uneven_classes_are_never_emptied() -> None:
    labels = np.array([0] * 9 + [1] + [2] * 2)
    kept = level1.keep_lowest(np.linspace(1, 0, 12), labels, alpha=0.95)
    assert np.bincount(labels[kept]).tolist() == [1, 1, 1]


def test_ties_break_by_index_and_order_is_preserved() -> None:
    labels = np.zeros(6, dtype=np.int64)
    scores = np.array([1.0, 0.5, 0.5, 0.5, 2.0, 0.5])
    assert level1.keep_lowest(scores, labels, alpha=0.5).tolist() == [1, 2, 3]
    shuffled = np.array([3, 0, 2, 1, 0, 3, 1, 2])
    kept = level1.keep_lowest(np.arange(8.0)[::-1], shuffled, alpha=0.5)
    assert kept.tolist() == sorted(kept.tolist())


def test_random_baseline_same_counts_seeded() -> None:
    labels = np.repeat(np.arange(4), [10, 7, 3, 1])
    a = level1.keep_random(labels, 0.5, seed=1)
    b = level1.keep_random(labels, 0.5, seed=1)
    c = level1.keep_random(labels, 0.5, seed=2)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert np.bincount(labels[a]).tolist() == [5, 4, 2, 1]


def test_strata_partition_each_class_from_largest_loss() -> None:
    labels = np.repeat(np.arange(2), 20)
    scores = np.concatenate([np.arange(20.0), -np.arange(20.0)])
    parts = level1.strata(scores, labels)
    assert sorted(np.concatenate(parts).tolist()) == list(range(40))
    assert parts[0].tolist() == [18, 19, 20, 21]  # S1: the two largest losses of each class
    assert level1.keep_stratum(scores, labels, 10).tolist() == [0, 1, 38, 39]
    with pytest.raises(BiLPError, match="stratum must be in 1..10"):
        level1.keep_stratum(scores, labels, 11)


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.2])
def test_alpha_out_of_range(alpha: float) -> None:
    with pytest.raises(BiLPError, match=r"must be in \[0, 1\)"):
        level1.keep_lowest([1.0], [0], alpha)


def test_diversity_ratio_grows_with_spread() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    centres = np.array([[0, 0], [10, 0], [0, 10]])[labels]
    tight = level1.diversity_ratio(centres + rng.normal(0, 0.5, (150, 2)), labels)
    wide = level1.diversity_ratio(centres + rng.normal(0, 3.0, (150, 2)), labels)
    assert 0 < tight < wide


def _authors_kept(values: list[float], labels: list[int], drop_ratio: float) -> set[int]:
    """The authors' rule re-stated (drop_utils/drop.py, order 'large'): per class, sort by the negated value
    (Python's stable sort), drop the first int(ratio * n), keep the rest."""
    kept: set[int] = set()
    for c in sorted(set(labels)):
        group = sorted((i for i, lab in enumerate(labels) if lab == c), key=lambda i: -values[i])
        kept.update(group[int(drop_ratio * len(group)):])
    return kept


def test_authors_cifar10_file_gives_the_authors_kept_set(cifar10_root: Path) -> None:
    scores_dir = os.environ.get("BILP_SCORES_DIR")
    if not scores_dir or not (Path(scores_dir) / "CIFAR10_LossConverge.json").exists():
        pytest.skip("BILP_SCORES_DIR not set (the folder of the authors' score files, docs/data.md)")
    from bilp_plugin.lab.datasets import load_dataset

    values = json.loads((Path(scores_dir) / "CIFAR10_LossConverge.json").read_text())
    labels = load_dataset("cifar10", str(cifar10_root)).labels.tolist()
    kept = level1.keep_lowest(values, labels, alpha=0.9)
    assert set(kept.tolist()) == _authors_kept(values, labels, 0.9)
    assert len(kept) == 10 * (5000 - math.floor(0.9 * 5000))
