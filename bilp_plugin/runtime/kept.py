"""A map-style dataset restricted to the samples level 1 keeps (IDC's ``trainset``, IDM's ``ImageFolder``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class KeptDataset(torch.utils.data.Dataset):
    """The kept samples of a dataset with ``targets``, in dataset order: item access, ``targets``, length; any
    other attribute (``nclass``, ``classes``, ...) is the wrapped dataset's."""

    def __init__(self, dataset: Any, kept: np.ndarray) -> None:
        self.dataset = dataset
        self.indices = np.asarray(kept, dtype=np.int64)
        targets = np.asarray(dataset.targets)
        self.targets = [int(t) for t in targets[self.indices]]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[int(self.indices[index])]

    def __len__(self) -> int:
        return len(self.indices)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)
