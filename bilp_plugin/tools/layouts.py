"""A per-class subset of CIFAR-10 in torchvision's ``cifar-10-batches-py`` layout (what DC, MTT, IDC and IDM read),
for CPU smoke runs, tests and benchmarks.

    bilp subset $BILP_DATA small --per-class 20 --test-per-class 10 \\
        --scores CIFAR10_LossConverge.json

The first ``per_class`` training samples of each class are kept in their original order; ``DST/indices.npy``
holds their indices in the full training set, and ``--scores`` writes the matching slice of a full-set score
file (an authors' JSON list) to ``DST/<its name>``, so level 1 ranks the subset by the full set's scores.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import files
from bilp_plugin.errors import BiLPError
from bilp_plugin.method import scorefile

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def _read(folder: Path, name: str) -> dict[str, Any]:
    file = folder / name
    if not file.is_file():
        raise BiLPError(f"{file} does not exist: pass the folder that holds {FOLDER}/ (e.g. $BILP_DATA)")
    try:
        with open(file, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        raise BiLPError(f"cannot read {file} ({type(err).__name__}: {err}): it is truncated or not a CIFAR-10 "
                        "batch; extract the official archive again") from None


def _first_per_class(labels: np.ndarray, count: int | None) -> np.ndarray:
    if count is None:
        return np.arange(len(labels), dtype=np.int64)
    if count < 1:
        raise BiLPError(f"samples per class must be >= 1, got {count}")
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:count] for c in np.unique(labels)]))


def _write(folder: Path, name: str, data: np.ndarray, labels: np.ndarray) -> None:
    with files.replacing(folder / name) as f:
        pickle.dump({"batch_label": name, "labels": labels.tolist(), "data": data, "filenames": []}, f)


def write_cifar10_subset(src: str | Path, dst: str | Path, per_class: int | None,
                         test_per_class: int | None = None, scores: str | Path | None = None) -> np.ndarray:
    """Write the subset under ``dst``; returns the kept training indices (ascending, into the full set)."""
    source, target = Path(src) / FOLDER, Path(dst) / FOLDER
    batches = [_read(source, name) for name in TRAIN_FILES]
    data = np.concatenate([b["data"] for b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    kept = _first_per_class(labels, per_class)
    test = _read(source, "test_batch")
    test_labels = np.asarray(test["labels"], dtype=np.int64)
    test_kept = _first_per_class(test_labels, test_per_class)
    values = scorefile.load(scores).scores if scores is not None else None
    if values is not None and len(values) != len(labels):
        raise BiLPError(f"{scores} has {len(values)} scores, the training set in {source} {len(labels)}")
    files.check_folder(target, "DST")
    for name, part in zip(TRAIN_FILES, np.array_split(kept, len(TRAIN_FILES))):
        _write(target, name, data[part], labels[part])
    _write(target, "test_batch", np.asarray(test["data"])[test_kept], test_labels[test_kept])
    files.write_bytes(target / "batches.meta", (source / "batches.meta").read_bytes())
    files.save_npy(Path(dst) / "indices.npy", kept)
    if values is not None:
        files.write_text(Path(dst) / Path(scores).name, json.dumps(values[kept].tolist()))
    return kept
