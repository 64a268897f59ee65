"""Run configuration: :class:`BiLPConfig` (what a ``--bilp`` run does) and :class:`ScoringConfig` (how level-1
scores are made), with the checks of their values. The ``--bilp-*`` flags that fill a :class:`BiLPConfig` are
:mod:`bilp_plugin.runtime.flags`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bilp_plugin.errors import BiLPError

Criterion = Literal["loss", "random", "stratum"]
Side = Literal["both", "small", "large"]
IteMethod = Literal["exact", "taylor", "taylor-sum"]
Stats = Literal["global", "class"]
Rule = Literal["relative", "paper"]
CRITERIA: tuple[str, ...] = ("loss", "random", "stratum")
SIDES: tuple[str, ...] = ("both", "small", "large")
ITE_METHODS: tuple[str, ...] = ("exact", "taylor", "taylor-sum")
STATS: tuple[str, ...] = ("global", "class")
RULES: tuple[str, ...] = ("relative", "paper")
STRATA = 10


def check_ratio(name: str, value: float) -> float:
    """A pruning ratio must lie in [0, 1): 1 would empty every class."""
    if not 0.0 <= value < 1.0:
        raise BiLPError(f"{name} must be in [0, 1), got {value}")
    return value


def check_stratum(value: int | None) -> int | None:
    if value is not None and not 1 <= value <= STRATA:
        raise BiLPError(f"stratum must be in 1..{STRATA} (S1 = largest loss), got {value}")
    return value


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
        if not 0.0 < self.eta <= 1.0:
            raise BiLPError(f"--bilp-eta must be in (0, 1], got {self.eta}")
        if self.interval < 1:
            raise BiLPError(f"--bilp-interval must be >= 1, got {self.interval}")
        if self.min_keep < 1:
            raise BiLPError(f"--bilp-min-keep must be >= 1, got {self.min_keep}")
        if self.score_epochs < 1:
            raise BiLPError(f"--bilp-score-epochs must be >= 1, got {self.score_epochs}")

    @property
    def level1(self) -> bool:
        return self.alpha > 0 or self.criterion == "stratum"

    @property
    def level2(self) -> bool:
        return self.beta > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
