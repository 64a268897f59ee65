"""Level 1 selection: which real samples distillation may ever see.

Rule (the authors' code): per class, keep the ``n_c - floor(alpha * n_c)`` samples with the lowest score
(stable sort, ties by index), in their original order; the largest losses are pruned. Baselines behind the same
interface: a seeded random per-class subset of the same size, and one stratum (decile) of the loss order for the
stratified study (S1 = largest loss). Every function returns dataset indices, int64, ascending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bilp_plugin.config import STRATA, check_ratio, check_stratum
from bilp_plugin.errors import BiLPError


def kept_per_class(n_c: int, alpha: float) -> int:
    """How many of a class's ``n_c`` samples survive pruning rate ``alpha``."""
    return n_c - math.floor(alpha * n_c)


def _classes(labels: np.ndarray) -> list[np.ndarray]:
    """Dataset indices of each class, ascending."""
    return [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)] if len(labels) else []


def keep_lowest(scores: Any, labels: Any, alpha: float) -> np.ndarray:
    """Per class, the ``n_c - floor(alpha n_c)`` lowest-score indices (largest score pruned first)."""
    check_ratio("alpha", alpha)
    scores, labels = _arrays(scores, labels)
    kept = [idx[np.argsort(scores[idx], kind="stable")[:kept_per_class(len(idx), alpha)]]
            for idx in _classes(labels)]
    return _sorted(kept)


def keep_random(labels: Any, alpha: float, seed: int) -> np.ndarray:
    """A uniformly random per-class subset of the same size as :func:`keep_lowest` keeps (seeded)."""
    check_ratio("alpha", alpha)
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=np.int64)
    kept = [rng.choice(idx, size=kept_per_class(len(idx), alpha), replace=False) for idx in _classes(labels)]
    return _sorted(kept)


def strata(scores: Any, labels: Any, strata_count: int = STRATA) -> list[np.ndarray]:
    """Per class, the loss order from largest to smallest split into ``strata_count`` near-equal parts;
    returns the union over classes of each part: ``[S1, ..., S10]`` (S1 = largest loss)."""
    scores, labels = _arrays(scores, labels)
    parts: list[list[np.ndarray]] = [[] for _ in range(strata_count)]
    for idx in _classes(labels):
        order = idx[np.argsort(-scores[idx], kind="stable")]
        for k, part in enumerate(np.array_split(order, strata_count)):
            parts[k].append(part)
    return [_sorted(p) for p in parts]


def keep_stratum(scores: Any, labels: Any, stratum: int) -> np.ndarray:
    """Stratum ``S<stratum>`` of :func:`strata`."""
    check_stratum(stratum)
    return strata(scores, labels)[stratum - 1]


def select(scores: Any | None, labels: Any, alpha: float, criterion: str, seed: int = 0,
           stratum: int | None = None) -> np.ndarray:
    """Dispatch on ``criterion`` (``loss``, ``random``, ``stratum``)."""
    if criterion == "random":
        return keep_random(labels, alpha, seed)
    if scores is None:
        raise BiLPError(f"criterion {criterion!r} needs scores: pass a score file")
    if criterion == "loss":
        return keep_lowest(scores, labels, alpha)
    if criterion == "stratum":
        if stratum is None:
            raise BiLPError("criterion 'stratum' needs a stratum K in 1..10")
        return keep_stratum(scores, labels, stratum)
    raise BiLPError(f"unknown criterion {criterion!r}: use loss, random or stratum")


def diversity_ratio(features: Any, labels: Any) -> float:
    """Intra-class over inter-class variance of ``features`` (N, D): the diversity measure of Fig. 4."""
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    labels = np.asarray(labels, dtype=np.int64)
    centre = x.mean(0)
    intra = inter = 0.0
    for c in np.unique(labels):
        xc = x[labels == c]
        mc = xc.mean(0)
        intra += float(((xc - mc) ** 2).sum())
        inter += len(xc) * float(((mc - centre) ** 2).sum())
    return intra / inter if inter > 0 else float("inf")


def summary(kept: np.ndarray, labels: Any, **fields: Any) -> dict[str, Any]:
    """Per-class kept and total counts of a selection, with the caller's fields."""
    labels = np.asarray(labels, dtype=np.int64)
    total = np.bincount(labels).tolist()
    kept_counts = np.bincount(labels[kept], minlength=len(total)).tolist()
    return {**fields, "n": int(len(labels)), "kept": int(len(kept)), "class_counts": total,
            "kept_per_class": kept_counts}


@dataclass(frozen=True)
class Subset:
    """What level 1 left of a real set: every sample's label, the kept dataset indices (``None``: the full set,
    level 1 off) and level 1's summary (``None`` when off)."""

    labels: np.ndarray
    kept: np.ndarray | None = None
    summary: dict[str, Any] | None = None

    @property
    def kept_per_class(self) -> list[int]:
        kept = self.labels if self.kept is None else self.labels[self.kept]
        return np.bincount(kept, minlength=int(self.labels.max()) + 1 if len(self.labels) else 0).tolist()


def require_rows(kept_per_class: list[int], rows: int, why: str, alpha: float) -> None:
    """Refuse a level-1 selection that leaves some class fewer than ``rows`` samples, saying ``why`` they are
    needed and which classes fall short."""
    short = [(c, n) for c, n in enumerate(kept_per_class) if n < rows]
    if short:
        listed = ", ".join(f"class {c}: {n}" for c, n in short[:5]) + (" ..." if len(short) > 5 else "")
        raise BiLPError(f"level 1 (--bilp-alpha {alpha}) leaves fewer than {rows} samples in {len(short)} "
                        f"class(es) ({listed}), but {why}: lower --bilp-alpha")


def require_every_class(subset: Subset, rule: str) -> None:
    """Refuse a level-1 selection that leaves a class of the real set no sample at all (every upstream draws real
    rows of each class); ``rule`` names the flags that chose it."""
    present = np.bincount(subset.labels) if len(subset.labels) else np.zeros(0, dtype=np.int64)
    empty = [c for c, n in enumerate(subset.kept_per_class) if n == 0 and present[c] > 0]
    if empty:
        more = f" nor of {len(empty) - 1} more class(es)" if len(empty) > 1 else ""
        raise BiLPError(f"level 1 ({rule}) keeps no sample of class {empty[0]} (of its {present[empty[0]]}){more}, "
                        "but the upstream draws real rows of every class: choose another --bilp-stratum or a "
                        "lower --bilp-alpha")


def _arrays(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if scores.shape != labels.shape:
        raise BiLPError(f"{len(scores)} scores for {len(labels)} labels: they must match one to one")
    return scores, labels


def _sorted(parts: list[np.ndarray]) -> np.ndarray:
    return np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
