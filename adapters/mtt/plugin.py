"""BiLP for MTT (GeorgeCazenavette/mtt-distillation): level 1 in both stages, with the same subset guaranteed.

MTT trains expert trajectories on the real set (``buffer.py``), then distils by matching them (``distill.py``). Real
samples reach the synthetic set only through the experts (and through ``--pix_init real``), never through the
trajectory-matching loss, so level 2 has nothing to prune: :func:`check_run` refuses ``--bilp-beta > 0``.

The two stages must see one subset. ``buffer.py --bilp`` writes that subset into the expert folder it fills;
``distill.py --bilp`` compares its own level-1 subset with the one recorded for the experts it loads and refuses a
mismatch (:func:`after_level1`; the record is :mod:`bilp_adapters.experts`, shared with DATM). A folder of experts
trained without ``--bilp`` holds the full set.
"""

from __future__ import annotations

from typing import Any

from bilp_adapters import experts
from bilp_plugin import hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.level1 import Subset
from bilp_plugin.runtime import printed

SCRIPTS = experts.Scripts("buffer.py", "distill.py")


def stage(args: Any) -> str:
    """``"buffer"`` (expert training) or ``"distill"``, told apart by their own arguments."""
    if hasattr(args, "syn_steps"):
        return "distill"
    if hasattr(args, "num_experts"):
        return "buffer"
    raise BiLPError("the mtt adapter runs inside MTT's buffer.py or distill.py; these arguments are neither's")


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse what MTT cannot run: level 2, and level 1 by loss in distill.py without the score file."""
    if config.level2:
        raise BiLPError(f"--bilp-beta must be 0 for MTT, got {config.beta}: MTT's trajectory-matching loss sees no "
                        "real samples (they enter only through the expert trajectories), so there is no real batch "
                        "to prune by ITE. Use level 1 (--bilp-alpha) in both buffer.py and distill.py")
    if stage(args) == "distill":
        experts.check_scores_given(args, config, SCRIPTS)


@hookimpl
def check_level1(args: Any, subset: Subset) -> None:
    """distill.py: refuse too few kept images per class for ``--pix_init real``."""
    if stage(args) == "distill" and args.pix_init == "real" and min(subset.kept_per_class) < args.ipc:
        raise BiLPError(f"--pix_init real needs --ipc {args.ipc} real images per class, but level 1 keeps only "
                        f"{min(subset.kept_per_class)} in some class (kept per class: {subset.kept_per_class}): "
                        "lower --bilp-alpha or --ipc, or use --pix_init noise")


@hookimpl
def after_level1(args: Any, config: BiLPConfig, subset: Subset) -> None:
    """buffer.py: record this run's subset in its expert folder; distill.py: refuse experts of another subset."""
    experts.record_or_verify(args, config, subset, stage(args), SCRIPTS)


@hookimpl
def make_host() -> None:
    """``--host mtt`` is refused, saying why: MTT has no host for demo, sweep and ablate points."""
    raise BiLPError("--host mtt is not offered: every point would need its own expert trajectories (buffer.py on "
                    "the point's kept subset: level 1 changes them) before distill.py, whose accuracies it only "
                    "prints; run buffer.py and distill.py with the --bilp flags yourself (docs/adapter-mtt.md)")


@hookimpl
def read_accuracy(line: str) -> printed.Accuracy | None:
    """``distill.py``'s evaluation line (DatasetCondensation's ``Evaluate N random ...``)."""
    return printed.dc_family_accuracy(line)
