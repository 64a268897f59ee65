"""A small CIFAR-10 in torchvision's ``cifar-10-batches-py`` layout: the first ``per_class`` training images of
each class (in dataset order, spread over the five batch files) and the first ``test_per_class`` test images."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np

LAYOUT = "cifar-10-batches-py"


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    return np.asarray(batch["data"]), np.asarray(batch["labels"])


def _first(data: np.ndarray, labels: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rows = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
    return data[rows], labels[rows]


def _dump(path: Path, data: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        pickle.dump({"data": data, "labels": labels.tolist(), "batch_label": path.name}, f)


def write_cifar10_subset(root: Path, dest: Path, per_class: int, test_per_class: int) -> Path:
    """Write the subset under ``dest/cifar-10-batches-py`` (read with the md5 check skipped); returns ``dest``."""
    src, out = root / LAYOUT, dest / LAYOUT
    out.mkdir(parents=True, exist_ok=True)
    parts = [_load(src / f"data_batch_{i}") for i in range(1, 6)]
    data, labels = _first(np.concatenate([d for d, _ in parts]), np.concatenate([y for _, y in parts]), per_class)
    for i, rows in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        _dump(out / f"data_batch_{i}", data[rows], labels[rows])
    _dump(out / "test_batch", *_first(*_load(src / "test_batch"), test_per_class))
    shutil.copy(src / "batches.meta", out / "batches.meta")
    return dest
