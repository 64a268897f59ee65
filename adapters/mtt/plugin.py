"""BiLP for MTT (GeorgeCazenavette/mtt-distillation): level 1 in both stages, with the same subset guaranteed.

MTT trains expert trajectories on the real set (``buffer.py``), then distils by matching them (``distill.py``). Real
samples reach the synthetic set only through the experts (and through ``--pix_init real``), never through the
trajectory-matching loss, so level 2 has nothing to prune: :func:`check_run` refuses ``--bilp-beta > 0``.

The two stages must see one subset. ``buffer.py --bilp`` writes that subset into the expert folder it fills
(:data:`SUBSET_FILE`, :data:`KEPT_FILE`); ``distill.py --bilp`` compares its own level-1 subset with the one recorded
for the experts it loads and refuses a mismatch (:func:`after_level1`). A folder of experts trained without
``--bilp`` holds the full set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import files, hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.level1 import Subset

SUBSET_FILE = "bilp_subset.json"
KEPT_FILE = "bilp_kept_indices.npy"
FORMAT = "bilp-mtt-subset/1"


def stage(args: Any) -> str:
    """``"buffer"`` (expert training) or ``"distill"``, told apart by their own arguments."""
    if hasattr(args, "syn_steps"):
        return "distill"
    if hasattr(args, "num_experts"):
        return "buffer"
    raise BiLPError("the mtt adapter runs inside MTT's buffer.py or distill.py; these arguments are neither's")


def expert_dir(args: Any) -> Path:
    """The folder ``buffer.py`` saves experts to and ``distill.py`` loads them from (both scripts' own rule)."""
    path = os.path.join(args.buffer_path, args.dataset)
    if args.dataset == "ImageNet":
        path = os.path.join(path, args.subset, str(args.res))
    if args.dataset in ("CIFAR10", "CIFAR100") and not args.zca:
        path += "_NO_ZCA"
    return Path(path) / args.model


def _has_experts(folder: Path) -> bool:
    return (folder / "replay_buffer_0.pt").exists()


@hookimpl
def check_run(args: Any, config: BiLPConfig) -> None:
    """Refuse what MTT cannot run: level 2, and level 1 by loss in distill.py without the score file."""
    if config.level2:
        raise BiLPError(f"--bilp-beta must be 0 for MTT, got {config.beta}: MTT's trajectory-matching loss sees no "
                        "real samples (they enter only through the expert trajectories), so there is no real batch "
                        "to prune by ITE. Use level 1 (--bilp-alpha) in both buffer.py and distill.py")
    if stage(args) == "distill":
        _check_scores_given(args, config)


def _check_scores_given(args: Any, config: BiLPConfig) -> None:
    """distill.py passes no images to score on the fly: it needs the score file buffer.py used."""
    if not config.level1 or config.criterion == "random" or config.scores is not None:
        return
    recorded = _read_subset(expert_dir(args))
    used = f" ({recorded['scores']} for the experts in {expert_dir(args)})" if recorded and recorded["scores"] else ""
    raise BiLPError(f"distill.py --bilp --bilp-criterion {config.criterion} needs --bilp-scores FILE: pass the score "
                    f"file buffer.py used{used}")


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
    described = describe_subset(subset.labels, subset.kept, config, subset.summary) | {"dataset": args.dataset}
    folder = expert_dir(args)
    if stage(args) == "buffer":
        record_subset(folder, described, subset.kept)
    else:
        verify_subset(folder, described)


def describe_subset(labels: np.ndarray, kept: np.ndarray | None, config: BiLPConfig,
                    summary: dict[str, Any] | None) -> dict[str, Any]:
    """What identifies a level-1 subset (``kept_sha256``, ``n``) and where it came from."""
    n = len(labels)
    indices = np.arange(n, dtype=np.int64) if kept is None else np.asarray(kept, dtype=np.int64)
    info = summary or {}
    return {"format": FORMAT, "n": n, "kept": len(indices), "full": len(indices) == n,
            "kept_sha256": indices_sha256(indices), "dataset": info.get("dataset"),
            "alpha": config.alpha if kept is not None else 0.0,
            "criterion": config.criterion if kept is not None else None,
            "stratum": config.stratum if kept is not None else None,
            "seed": config.seed if kept is not None and config.criterion == "random" else None,
            "scores": info.get("scores"), "scores_sha256": info.get("scores_sha256"),
            "kept_per_class": info.get("kept_per_class", np.bincount(labels).tolist() if n else [])}


def indices_sha256(indices: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(indices, dtype="<i8").tobytes()).hexdigest()


def same_subset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["n"] == b["n"] and a["kept_sha256"] == b["kept_sha256"]


def subset_text(subset: dict[str, Any]) -> str:
    """One line a user can compare: size, rule, score file."""
    if subset.get("full"):
        return f"the full set ({subset['n']} samples)"
    rule = f"criterion {subset['criterion']}, alpha {subset['alpha']}"
    if subset.get("stratum") is not None:
        rule += f", stratum {subset['stratum']}"
    if subset.get("seed") is not None:
        rule += f", seed {subset['seed']}"
    if subset.get("scores"):
        rule += f", scores {subset['scores']} (sha256 {str(subset['scores_sha256'])[:12]})"
    return f"{subset['kept']} of {subset['n']} samples ({rule}; kept indices sha256 {subset['kept_sha256'][:12]})"


def _read_subset(folder: Path) -> dict[str, Any] | None:
    file = folder / SUBSET_FILE
    if not file.is_file():
        return None
    try:
        subset = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise BiLPError(f"cannot read {file} ({err}): delete the expert folder {folder} and train its experts "
                        "again") from None
    if subset.get("format") != FORMAT:
        raise BiLPError(f"{file} is not a {FORMAT} record (format {subset.get('format')!r})")
    return subset


def record_subset(folder: Path, subset: dict[str, Any], kept: np.ndarray | None) -> None:
    """Write ``subset`` into the expert folder, or refuse to add experts of another subset to it."""
    existing = _read_subset(folder)
    if existing is None and _has_experts(folder) and not subset["full"]:
        raise BiLPError(f"{folder} already holds experts trained without --bilp (the full set); this run would add "
                        f"experts trained on {subset_text(subset)}: use another --buffer_path")
    if existing is not None:
        if not same_subset(existing, subset):
            raise BiLPError(f"{folder} holds experts trained on {subset_text(existing)}; this run would add experts "
                            f"trained on {subset_text(subset)}: use another --buffer_path")
        return
    files.save_npy(folder / KEPT_FILE, np.arange(subset["n"], dtype=np.int64) if kept is None else kept)
    files.write_json(folder / SUBSET_FILE, subset)


def verify_subset(folder: Path, subset: dict[str, Any]) -> None:
    """Refuse to distil from experts trained on another subset than this run's level 1 keeps."""
    if not _has_experts(folder):
        raise BiLPError(f"no experts in {folder} (no replay_buffer_0.pt): run buffer.py with the same --bilp "
                        "flags first")
    trained = _read_subset(folder)
    if trained is None:
        if subset["full"]:
            return
        trained_text = f"the full set (no {SUBSET_FILE}: trained without --bilp)"
    elif same_subset(trained, subset):
        return
    else:
        trained_text = subset_text(trained)
    raise BiLPError(f"the experts in {folder} were trained on {trained_text}, but this distill.py run keeps "
                    f"{subset_text(subset)}: pass distill.py the --bilp flags buffer.py was run with, or train "
                    "experts on this subset (buffer.py --bilp ... --buffer_path OTHER)")


@hookimpl
def make_host() -> None:
    """``--host mtt`` is refused, saying why: MTT has no host for demo, sweep and ablate points."""
    raise BiLPError("--host mtt is not offered: every point would need its own expert trajectories (buffer.py on "
                    "the point's kept subset: level 1 changes them) before distill.py, whose accuracies it only "
                    "prints; run buffer.py and distill.py with the --bilp flags yourself (docs/adapter-mtt.md)")
