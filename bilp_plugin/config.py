"""Run configuration: :class:`BiLPConfig` (what a ``--bilp`` run does) and :class:`ScoringConfig` (how level-1
scores are made), with the checks of their values, and :data:`FLAGS`, the one table of the ``--bilp-*`` flags that
fill a :class:`BiLPConfig` (added to an upstream's parser by :mod:`bilp_plugin.runtime.flags`)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
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
    ``beta = 0``; with both off the run is bit-for-bit the baseline. Each field is filled by one ``--bilp-*`` flag
    and checked by it (:data:`FLAGS`)."""

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

    def __post_init__(self) -> None:
        for flag in FLAGS:
            flag.validate(getattr(self, flag.field))
        if (self.criterion == "stratum") != (self.stratum is not None):
            raise BiLPError("--bilp-criterion stratum needs --bilp-stratum K (1..10), and --bilp-stratum needs it")

    @property
    def level1(self) -> bool:
        return self.alpha > 0 or self.criterion == "stratum"

    @property
    def level2(self) -> bool:
        return self.beta > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_file_named(name: str, value: str) -> str:
    if not value.strip():
        raise BiLPError(f"{name} names no file: pass a score file, or leave the flag out to score on the fly")
    return value


def _count(name: str, value: int) -> int:
    return check_at_least(name, value, 1)


@dataclass(frozen=True)
class Flag:
    """One ``--bilp-*`` flag: the :class:`BiLPConfig` field it fills (the flag is ``--bilp-`` and the field's name,
    ``_`` as ``-``), how its text is read (``convert``), the check of its value (``check(flag, value)`` raises
    :class:`BiLPError`; ``None`` passes where the field's default is ``None``) or its ``choices``, its help, and
    whether it belongs to level 2 (hidden in ``--help`` of a script without level 2)."""

    field: str
    help: str
    convert: Callable[[str], Any] = str
    check: Callable[[str, Any], Any] | None = None
    choices: tuple[str, ...] | None = None
    level2: bool = False

    @property
    def option(self) -> str:
        return "--bilp-" + self.field.replace("_", "-")

    @property
    def dest(self) -> str:
        """The attribute argparse fills on the upstream's namespace."""
        return "bilp_" + self.field

    def validate(self, value: Any) -> Any:
        if value is None and BiLPConfig.__dataclass_fields__[self.field].default is None:
            return value
        if self.choices is not None and value not in self.choices:
            raise BiLPError(f"{self.option} must be one of {', '.join(self.choices)}, got {value!r}")
        return self.check(self.option, value) if self.check else value

    def argtype(self) -> Callable[[str], Any] | None:
        """The argparse ``type`` (``None`` where argparse's ``choices`` check the text)."""
        return None if self.choices is not None else argtype(self.convert, self.validate)


FLAGS: tuple[Flag, ...] = (
    Flag("alpha", "level 1: share of each class pruned before distillation, largest loss first [0, 1)", float,
         check_ratio),
    Flag("criterion", "level 1: loss (keep lowest loss per class), random (same counts), stratum (one decile)",
         choices=CRITERIA),
    Flag("stratum", "with --bilp-criterion stratum: keep decile K of the loss order (S1 = largest loss)", int,
         lambda _, v: check_stratum(v)),
    Flag("scores", "score file (.npz from `bilp score`, or the authors' JSON list); default: score on the fly",
         check=check_file_named),
    Flag("score_epochs", "epochs of empirical-loss training when scoring on the fly", int, _count),
    Flag("beta", "level 2: share of each real batch pruned by ITE during distillation [0, 1); 0 = off", float,
         check_ratio, level2=True),
    Flag("side", "level 2: prune both tails of the ITE distribution, or only small / only large", choices=SIDES,
         level2=True),
    Flag("rule", "level 2: relative (default: log ITE norm relative to its batch's median, running tracked "
         "quantiles; keeps 1 - beta) or paper (Eq. 8 on the norms, normal quantiles)", choices=RULES, level2=True),
    Flag("eta", "level 2: momentum of the running ITE statistics (0, 1]", float, check_eta, level2=True),
    Flag("interval", "level 2: re-select every k draws of a class, reuse the kept batch in between", int, _count,
         level2=True),
    Flag("stats", "level 2: one running ITE statistic for all classes, or one per class", choices=STATS,
         level2=True),
    Flag("ite", "level 2: exact (factored) ITE, or the paper's Taylor approximation (mean or sum form)",
         choices=ITE_METHODS, level2=True),
    Flag("min_keep", "level 2: never keep fewer rows", int, _count, level2=True),
    Flag("seed", "seed of BiLP's own generators", int, check_seed),
    Flag("out", "run-record folder (default: bilp_runs/<time>)"),
)
"""Every ``--bilp-*`` flag, one row per :class:`BiLPConfig` field: the upstream's parser
(:func:`bilp_plugin.runtime.flags.add_arguments`), the config it fills and checks, and the command line a host
passes to a launched upstream (:func:`flag_args`) all come from here. A new setting is one field above and one row
here."""
FLAG_OF = {flag.field: flag for flag in FLAGS}


def flag_args(values: dict[str, Any]) -> list[str]:
    """``--bilp`` and the flags that set ``values`` (field -> value; ``None`` is left out), in ``values``' order:
    what a host passes to an upstream it launches."""
    args = ["--bilp"]
    for name, value in values.items():
        if value is not None:
            args += [FLAG_OF[name].option, str(value)]
    return args
