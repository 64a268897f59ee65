"""The runtime's built-in hook implementations, registered ``trylast`` like any plugin: restricting the common
real-set structures, the file list of folder datasets, and level 2's own need after level 1."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from bilp_plugin import hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.method import level1
from bilp_plugin.runtime.kept import KeptDataset


@hookimpl(trylast=True)
def restrict_real(real: Any, kept: np.ndarray) -> Any | None:
    """Per-class index lists (DC, IDM ``indices_class``: each keeps its kept members, in order), tensors in dataset
    order (MTT ``images_all``, ``labels_all``: their kept rows), tuples of those (each part restricted), and
    map-style datasets with ``targets`` (IDC's ``trainset``, IDM's ``ImageFolder``: a :class:`KeptDataset`)."""
    if isinstance(real, tuple):
        parts = [restrict_real(part, kept) for part in real]
        return None if any(p is None for p in parts) else tuple(parts)
    if isinstance(real, torch.Tensor):
        return real[torch.as_tensor(kept, device=real.device)]
    if isinstance(real, list):
        return [np.asarray(idx, dtype=np.int64)[np.isin(idx, kept)].tolist() for idx in real]
    if isinstance(real, torch.utils.data.Dataset) and hasattr(real, "targets"):
        return KeptDataset(real, kept)
    return None


@hookimpl(trylast=True)
def real_files(real: Any) -> list[str] | None:
    """torchvision's ``DatasetFolder`` and its subclasses (IDC's and IDM's ``ImageFolder``): ``samples`` relative to
    ``root``, with ``/`` separators."""
    samples, root = getattr(real, "samples", None), getattr(real, "root", None)
    if not isinstance(real, torch.utils.data.Dataset) or samples is None or root is None:
        return None
    return [os.path.relpath(path, root).replace(os.sep, "/") for path, _ in samples]


@hookimpl(trylast=True)
def check_level1(config: BiLPConfig, subset: level1.Subset) -> None:
    """Level 2's ITE needs at least 2 real rows per class in the batch, so in the subset level 1 keeps."""
    if config.level2:
        level1.require_rows(subset.kept_per_class, 2, "level 2's ITE needs at least 2 real rows per batch (or "
                            "--bilp-beta 0 turns level 2 off)", config.alpha)
