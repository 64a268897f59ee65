"""Run configuration: :class:`BiLPConfig` (what a ``--bilp`` run does) and :class:`ScoringConfig` (how level-1
scores are made), with the checks of their values. The ``--bilp-*`` flags that fill a :class:`BiLPConfig` are
:mod:`bilp_plugin.runtime.flags`."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bilp_plugin.errors import BiLPError

Criterion = Literal["loss", "random", "stratum"]
Side = Literal["both", "small", "large"]
IteMethod = Literal["exact", "taylor", "taylor-sum", "random"]
Stats = Literal["global", "class"]
Rule = Literal["relative", "paper"]
CRITERIA: tuple[str, ...] = ("loss", "random", "stratum")
SIDES: tuple[str, ...] = ("both", "small", "large")
ITE_METHODS: tuple[str, ...] = ("exact", "taylor", "taylor-sum", "random")
STATS: tuple[str, ...] = ("global", "class")
RULES: tuple[str, ...] = ("relative", "paper")
STRATA = 10
SEED_LIMIT = 2**32


def check_ratio(name: str, value: float) -> float:
    """A pruning ratio must lie in [0, 1): 1 would empty every class."""
    if not 0.0 <= value < 1.0:
        raise BiLPError(f"{name} must be in [0, 1), got {value}")
    return value


def check_stratum(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= STRATA:
        raise BiLPError(f"stratum must be in 1..{STRATA} (S1 = largest loss), got {value}")
    return value


def check_at_least(name: str, value: int, low: int) -> int:
    if value < low:
        raise BiLPError(f"{name} must be >= {low}, got {value}")
    return value


def check_positive(name: str, value: float) -> float:
    """A finite number > 0 (a learning rate)."""
    if not (math.isfinite(value) and value > 0):
        raise BiLPError(f"{name} must be a finite number > 0, got {value}")
    return value


def check_eta(name: str, value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise BiLPError(f"{name} must be in (0, 1], got {value}")
    return value


def check_seed(name: str, value: int) -> int:
    if not 0 <= value < SEED_LIMIT:
        raise BiLPError(f"{name} must be in 0..{SEED_LIMIT - 1}, got {value}")
    return value


def argtype(convert: Callable[[str], Any], check: Callable[[Any], Any] | None = None) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` then ``check`` the text; a ``ValueError`` or :class:`BiLPError` becomes
    argparse's own one-line error (exit status 2), at parse time, before any work."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
            return check(value) if check else value
        except (ValueError, BiLPError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def ratio_type(name: str) -> Callable[[str], float]:
    return argtype(float, lambda v: check_ratio(name, v))


def count_type(name: str, low: int = 1) -> Callable[[str], int]:
    return argtype(int, lambda v: check_at_least(name, v, low))


def seed_type(name: str) -> Callable[[str], int]:
    return argtype(int, lambda v: check_seed(name, v))


@dataclass
class ScoringConfig:
    """How level-1 scores are obtained: an imported score file, or empirical-loss training (``docs/method.md``)."""

    scores_path: str | None = None
    model_width: int = 128
    model_depth: int = 3
    epochs: int = 10
    trials: int = 1
    batch_size: int = 256
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    mode: Literal["mean", "final"] = "mean"
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BiLPConfig:
    """Everything a ``--bilp`` run decides. Level 1 is off at ``alpha = 0`` (with criterion ``loss``), level 2 at
    ``beta = 0``; with both off the run is bit-for-bit the baseline."""

    alpha: float = 0.0
    criterion: Criterion = "loss"
    stratum: int | None = None
    scores: str | None = None
    score_epochs: int = 10
    beta: float = 0.0
    side: Side = "both"
    rule: Rule = "relative"
    eta: float = 0.1
    interval: int = 10
    stats: Stats = "global"
    ite: IteMethod = "exact"
    min_keep: int = 1
    seed: int = 0
    out: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_ratio("--bilp-alpha", self.alpha)
        check_ratio("--bilp-beta", self.beta)
        check_stratum(self.stratum)
        if self.criterion not in CRITERIA:
            raise BiLPError(f"--bilp-criterion must be one of {', '.join(CRITERIA)}, got {self.criterion!r}")
        if (self.criterion == "stratum") != (self.stratum is not None):
            raise BiLPError("--bilp-criterion stratum needs --bilp-stratum K (1..10), and --bilp-stratum needs it")
        if self.side not in SIDES:
            raise BiLPError(f"--bilp-side must be one of {', '.join(SIDES)}, got {self.side!r}")
        if self.ite not in ITE_METHODS:
            raise BiLPError(f"--bilp-ite must be one of {', '.join(ITE_METHODS)}, got {self.ite!r}")
        if self.rule not in RULES:
            raise BiLPError(f"--bilp-rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if self.stats not in STATS:
            raise BiLPError(f"--bilp-stats must be one of {', '.join(STATS)}, got {self.stats!r}")
        check_eta("--bilp-eta", self.eta)
        check_at_least("--bilp-interval", self.interval, 1)
        check_at_least("--bilp-min-keep", self.min_keep, 1)
        check_at_least("--bilp-score-epochs", self.score_epochs, 1)
        check_seed("--bilp-seed", self.seed)
        if self.scores is not None and not self.scores.strip():
            raise BiLPError("--bilp-scores names no file: pass a score file, or leave the flag out to score on "
                            "the fly")

    @property
    def level1(self) -> bool:
        return self.alpha > 0 or self.criterion == "stratum"

    @property
    def level2(self) -> bool:
        return self.beta > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
