"""``torchnet.meter.ClassErrorMeter`` (torchnet 0.0.4): top-k error (or accuracy) in percent over everything added
since reset."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class ClassErrorMeter:
    """Counts, per ``k`` in ``topk``, the rows whose target is not among the ``k`` largest outputs."""

    def __init__(self, topk: Sequence[int] = (1,), accuracy: bool = False) -> None:
        self.topk = np.sort(np.asarray(topk))
        self.accuracy = accuracy
        self.reset()

    def reset(self) -> None:
        self.sum = {int(k): 0 for k in self.topk}
        self.n = 0

    def add(self, output: Any, target: Any) -> None:
        """Add a batch: ``output`` (N, classes) or (classes,) scores, ``target`` (N,) class indices."""
        out = torch.as_tensor(output).detach().cpu().squeeze()
        out = out.unsqueeze(0) if out.dim() == 1 else out
        if isinstance(target, numbers.Number):
            tgt = torch.tensor([target])
        else:
            tgt = torch.as_tensor(target).detach().cpu().squeeze().reshape(-1)
        if out.dim() != 2 or tgt.shape[0] != out.shape[0]:
            raise ValueError(f"output {tuple(out.shape)} and target {tuple(tgt.shape)} do not match")
        pred = out.topk(int(self.topk[-1]), 1, True, True)[1]
        correct = pred == tgt.reshape(-1, 1).to(pred.dtype)
        for k in self.sum:
            self.sum[k] += out.shape[0] - int(correct[:, :k].sum())
        self.n += out.shape[0]

    def value(self, k: int = -1) -> Any:
        """Error (or accuracy) in percent for ``k``; a list over ``topk`` when ``k`` is -1."""
        if k == -1:
            return [self.value(int(kk)) for kk in self.topk]
        error = float(self.sum[k]) / self.n
        return (1.0 - error) * 100.0 if self.accuracy else error * 100.0
