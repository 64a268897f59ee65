"""A small fake ImageNet-style tree for tests: ``ROOT/{train,val}/<class>/<image>.png``, seeded random pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_tree(root: Path, classes: int, per_class: int, val_per_class: int = 2, size: int = 8,
               seed: int = 0) -> Path:
    """``classes`` class folders named like ImageNet's (``n0000000k``), ``per_class`` training and
    ``val_per_class`` validation images each, ``size`` x ``size`` RGB PNGs; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root
