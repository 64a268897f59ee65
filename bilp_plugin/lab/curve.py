"""Accuracy against the level-1 pruning rate alpha, per criterion, and the maximum pruning ratio that keeps the
accuracy (the paper's Tables 1-2 and Fig. 2): the points ``bilp sweep`` and ``bilp demo`` run, and the rule.

The rule: the largest alpha whose mean accuracy stays within the baseline's std,
``mean(alpha) >= mean(baseline) - std(baseline)``, accuracies pooled over seeds and evaluated networks (0 when no
alpha qualifies). ``loss`` keeps the lowest-loss samples of each class, ``random`` a seeded random subset of the
same per-class size.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from typing import Any

from bilp_plugin.config import STRATA, check_ratio, check_stratum
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.hosts import Point

CRITERIA = ("loss", "random")


T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18,
        15: 2.13, 20: 2.09, 30: 2.04, 60: 2.00, 120: 1.98}
"""Student's t, 97.5% quantile, by degrees of freedom (between two rows, the row below: a larger t)."""


def t975(dof: int) -> float:
    return T975[max(k for k in T975 if k <= dof)] if dof >= 1 else math.inf


def parse_alphas(text: str, flag: str = "--alphas") -> list[float]:
    """Comma-separated pruning rates in [0, 1), ascending, without 0 (the baseline is always run)."""
    try:
        values = sorted({float(a) for a in text.split(",") if a.strip()})
    except ValueError:
        raise BiLPError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not values:
        raise BiLPError(f"{flag} names no value: pass e.g. {flag} 0.3,0.5,0.7")
    for a in values:
        check_ratio(flag, a)
    return [a for a in values if a > 0]


def parse_criteria(text: str) -> list[str]:
    values = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in values if c not in CRITERIA]
    if bad or not values:
        raise BiLPError(f"--criteria must name loss and/or random, got {text!r}")
    return values


def parse_strata(text: str) -> list[int]:
    """Comma-separated loss deciles in 1..10 (none for an empty text)."""
    try:
        values = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError:
        raise BiLPError(f"--strata must be comma-separated integers in 1..{STRATA}, got {text!r}") from None
    for k in values:
        check_stratum(k)
    return values


def baseline_name(seed: int) -> str:
    return f"baseline-s{seed}"


def point_name(criterion: str, alpha: float, seed: int) -> str:
    return f"{criterion}-a{alpha:g}-s{seed}"


def stratum_name(stratum: int, seed: int) -> str:
    return f"stratum{stratum:02d}-s{seed}"


def stratum_points(strata: list[int], seeds: list[int]) -> list[Point]:
    """One level-1 run per loss decile and seed, distilled from that decile alone (Fig. 3)."""
    return [Point(stratum_name(k, s), criterion="stratum", stratum=k, seed=s) for k in strata for s in seeds]


def within(base: dict[str, Any], point: dict[str, Any]) -> bool:
    """The rule on summaries (:func:`bilp_plugin.lab.hosts.summary`): the point's mean accuracy is at least the
    baseline's mean minus its std."""
    return bool(point["accuracy_mean"] >= base["accuracy_mean"] - base["accuracy_std"])


def max_alpha(base: dict[str, Any], by_alpha: dict[float, dict[str, Any]]) -> float:
    """The largest alpha :func:`within` the baseline's std (0 if none), on summaries."""
    return max((a for a, s in by_alpha.items() if within(base, s)), default=0.0)


def points(alphas: list[float], seeds: list[int], criteria: list[str]) -> list[Point]:
    """Baseline per seed, then each alpha (ascending), criterion and seed; level 1 only (beta = 0)."""
    base = [Point(baseline_name(s), seed=s) for s in seeds]
    return base + [Point(point_name(c, a, s), criterion=c, alpha=a, seed=s)
                   for a in alphas for c in criteria for s in seeds]


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def _std(values: list[float]) -> float:
    return statistics.pstdev(values)


@dataclass
class Curve:
    """Pooled accuracies of the baseline and of each (criterion, alpha)."""

    base: list[float]
    accuracy: dict[str, dict[float, list[float]]] = field(default_factory=dict)

    @classmethod
    def from_results(cls, results: dict[str, dict], alphas: list[float], seeds: list[int],
                     criteria: list[str]) -> Curve:
        """From point results by name (as :func:`points` names them)."""
        def pooled(names: list[str]) -> list[float]:
            return [float(a) for n in names for a in results[n]["accuracy"]]

        return cls(pooled([baseline_name(s) for s in seeds]),
                   {c: {a: pooled([point_name(c, a, s) for s in seeds]) for a in alphas} for c in criteria})

    @property
    def floor(self) -> float:
        """The lowest mean accuracy that counts as kept: the baseline's mean minus its std."""
        return _mean(self.base) - _std(self.base)

    def within(self, accuracy: list[float]) -> bool:
        return _mean(accuracy) >= self.floor

    def max_alpha(self, criterion: str) -> float:
        return max((a for a, accs in self.accuracy[criterion].items() if self.within(accs)), default=0.0)

    @property
    def best(self) -> dict[str, float]:
        return {c: self.max_alpha(c) for c in self.accuracy}

    def table(self) -> list[str]:
        """Markdown: the baseline line, one row per alpha (``*`` = within the baseline's std), the max ratios."""
        criteria = list(self.accuracy)
        alphas = sorted({a for by_alpha in self.accuracy.values() for a in by_alpha})
        lines = [f"baseline (full real set): {_pct(self.base)} (floor {100 * self.floor:.1f}); '*' = within the "
                 "baseline's std", "", "| alpha | " + " | ".join(criteria) + " |", "|---" * (len(criteria) + 1) + "|"]
        for a in alphas:
            cells = [f"{_pct(self.accuracy[c][a])}{'*' if self.within(self.accuracy[c][a]) else ''}"
                     if a in self.accuracy[c] else "-" for c in criteria]
            lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
        lines += ["", "max alpha within the baseline's std: " + ", ".join(f"{c} {self.max_alpha(c):g}"
                                                                           for c in criteria)]
        return lines


def _pct(values: list[float]) -> str:
    return f"{100 * _mean(values):.1f} ± {100 * _std(values):.1f}"
