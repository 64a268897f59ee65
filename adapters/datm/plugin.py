"""BiLP for DATM (NUS-HPC-AI-Lab/DATM, difficulty-aligned trajectory matching): level 1 in both stages, with the
same subset guaranteed.

DATM trains expert trajectories on the real set (``buffer/buffer_FTD.py``, GSAM), then distils by matching them
(``distill/DATM.py``, or ``distill/DATM_tesla.py``, its memory-saving TESLA form). Real samples reach the synthetic
set only through the experts and the real initialisation (``--pix_init real`` or ``samples_predicted_correctly``),
never through the trajectory-matching loss, so level 2 has nothing to prune: :func:`check_run` refuses
``--bilp-beta > 0``, as the flags are parsed.

The two stages must see one subset: ``buffer_FTD.py --bilp`` records its subset in the expert folder it fills, and
the distillation scripts refuse experts of another subset (:mod:`bilp_adapters.experts`, MTT's record: DATM keeps
MTT's expert-folder layout).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bilp_adapters import experts
from bilp_plugin import hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.level1 import Subset

BUFFER_SCRIPT = "buffer_FTD.py"
REAL_INIT = ("real", "samples_predicted_correctly")
"""``--pix_init`` values that initialise the synthetic set from (kept) real images."""


def stage(args: Any) -> str:
    """``"buffer"`` (expert training) or ``"distill"``, told apart by their own arguments (``--cfg``: the
    distillation scripts, whose other arguments come from the config file)."""
    if hasattr(args, "cfg"):
        return "distill"
    if hasattr(args, "num_experts"):
        return "buffer"
    raise BiLPError("the datm adapter runs inside DATM's buffer_FTD.py, DATM.py or DATM_tesla.py; these arguments "
                    "are none of theirs")


def scripts() -> experts.Scripts:
    """The running distillation script (``DATM.py`` or ``DATM_tesla.py``) and the expert-training one."""
    name = Path(sys.argv[0]).name
    return experts.Scripts(BUFFER_SCRIPT, name if name.startswith("DATM") else "DATM.py")


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse what DATM cannot run: level 2 (also called as the flags are parsed, where ``args`` may hold only
    ``--cfg`` and the ``--bilp`` flags), and level 1 by loss in the distillation scripts without the score file."""
    if config.level2:
        raise BiLPError(f"--bilp-beta must be 0 for DATM, got {config.beta}: no real batch enters DATM's matching "
                        "loss (real samples reach the synthetic set only through the expert trajectories and the "
                        "real initialisation), so level 2 has nothing to prune. Use level 1 (--bilp-alpha) in both "
                        "buffer_FTD.py and DATM.py")
    if stage(args) == "distill" and hasattr(args, "buffer_path"):  # DATM.py's first parse: --cfg and --bilp only
        experts.check_scores_given(args, config, scripts())


@hookimpl
def check_level1(args: Any, subset: Subset) -> None:
    """Distillation: refuse fewer kept images per class than ``--ipc`` for a real initialisation."""
    if stage(args) == "distill" and args.pix_init in REAL_INIT and min(subset.kept_per_class) < args.ipc:
        raise BiLPError(f"pix_init {args.pix_init} needs ipc {args.ipc} real images per class, but level 1 keeps "
                        f"only {min(subset.kept_per_class)} in some class (kept per class: {subset.kept_per_class}): "
                        "lower --bilp-alpha, or ipc in the config file (DATM's pix_init noise defines no soft "
                        "labels)")


@hookimpl
def after_level1(args: Any, config: BiLPConfig, subset: Subset) -> None:
    """buffer_FTD.py: record this run's subset in its expert folder; distillation: refuse experts of another
    subset."""
    experts.record_or_verify(args, config, subset, stage(args), scripts())


@hookimpl
def make_host() -> None:
    """``--host datm`` is refused, saying why: DATM has no host for demo, sweep and ablate points."""
    raise BiLPError("--host datm is not offered: every point would need its own expert trajectories (buffer_FTD.py "
                    "on the point's kept subset: level 1 changes them) before DATM.py, whose accuracies it only "
                    "logs; run buffer_FTD.py and DATM.py with the --bilp flags yourself (docs/adapter-datm.md)")
