"""Small fake datasets for tests, in the layouts the upstreams read (seeded random pixels): an ImageNet-style
folder tree, MNIST's raw idx files, CIFAR-10's python batches."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_tree(root: Path, classes: int, per_class: int, val_per_class: int = 2, size: int = 8,
               seed: int = 0) -> Path:
    """``root/{train,val}/<class>/<image>.png``: ``classes`` class folders named like ImageNet's (``n0000000k``),
    ``per_class`` training and ``val_per_class`` validation images each, ``size`` x ``size`` RGB; returns
    ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root


def _labels(rng: np.random.Generator, per_class: int) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)


def write_mnist(root: Path, per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """``root/MNIST/raw``: the four uncompressed idx files torchvision's ``MNIST`` reads (no checksum); returns
    ``root``."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", per_class), ("t10k", test_per_class)):
        labels = _labels(rng, count)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, len(images), 28, 28)
                                                          + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return root


def write_cifar10(root: Path, per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` (five training batches, the test batch, ``batches.meta``); torchvision's md5
    check rejects it (``bilp launch --skip-cifar-integrity``); returns ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    labels = _labels(rng, per_class)
    parts = np.array_split(np.arange(len(labels)), 5)
    batches = [(f"data_batch_{i + 1}", labels[part]) for i, part in enumerate(parts)]
    for name, part_labels in [*batches, ("test_batch", _labels(rng, test_per_class))]:
        data = rng.integers(0, 256, (len(part_labels), 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": part_labels.tolist(), "data": data, "filenames": []}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": len(parts[0]), "num_vis": 3072}, f)
    return root
