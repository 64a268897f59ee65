"""Expert folders of the trajectory-matching upstreams (MTT and its descendant DATM): which level-1 subset their
experts were trained on, recorded by the expert-training script and verified by the distillation script.

The training script (``buffer.py``, ``buffer_FTD.py``) writes :data:`SUBSET_FILE` and :data:`KEPT_FILE` into the
expert folder it fills; the distillation script computes its own level-1 subset and refuses experts of another one.
A folder of experts trained without ``--bilp`` holds the full set. Messages name the upstream's own scripts
(:class:`Scripts`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import files
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.level1 import Subset

SUBSET_FILE = "bilp_subset.json"
KEPT_FILE = "bilp_kept_indices.npy"
FORMAT = "bilp-mtt-subset/1"


@dataclass(frozen=True)
class Scripts:
    """The upstream's expert-training and distillation scripts, as messages name them."""

    buffer: str
    distill: str


def expert_dir(args: Any) -> Path:
    """The folder the training script saves experts to and the distillation script loads them from (both MTT's
    and DATM's rule)."""
    path = os.path.join(args.buffer_path, args.dataset)
    if args.dataset == "ImageNet":
        path = os.path.join(path, args.subset, str(args.res))
    if args.dataset in ("CIFAR10", "CIFAR100") and not args.zca:
        path += "_NO_ZCA"
    return Path(path) / args.model


def has_experts(folder: Path) -> bool:
    return (folder / "replay_buffer_0.pt").exists()


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


def read_subset(folder: Path) -> dict[str, Any] | None:
    """The subset recorded in an expert folder, ``None`` when there is no record."""
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
    existing = read_subset(folder)
    if existing is None and has_experts(folder) and not subset["full"]:
        raise BiLPError(f"{folder} already holds experts trained without --bilp (the full set); this run would add "
                        f"experts trained on {subset_text(subset)}: use another --buffer_path")
    if existing is not None:
        if not same_subset(existing, subset):
            raise BiLPError(f"{folder} holds experts trained on {subset_text(existing)}; this run would add experts "
                            f"trained on {subset_text(subset)}: use another --buffer_path")
        return
    files.save_npy(folder / KEPT_FILE, np.arange(subset["n"], dtype=np.int64) if kept is None else kept)
    files.write_json(folder / SUBSET_FILE, subset)


def verify_subset(folder: Path, subset: dict[str, Any], scripts: Scripts) -> None:
    """Refuse to distil from experts trained on another subset than this run's level 1 keeps."""
    if not has_experts(folder):
        raise BiLPError(f"no experts in {folder} (no replay_buffer_0.pt): run {scripts.buffer} with the same --bilp "
                        "flags first")
    trained = read_subset(folder)
    if trained is None:
        if subset["full"]:
            return
        trained_text = f"the full set (no {SUBSET_FILE}: trained without --bilp)"
    elif same_subset(trained, subset):
        return
    else:
        trained_text = subset_text(trained)
    raise BiLPError(f"the experts in {folder} were trained on {trained_text}, but this {scripts.distill} run keeps "
                    f"{subset_text(subset)}: pass {scripts.distill} the --bilp flags {scripts.buffer} was run with, "
                    f"or train experts on this subset ({scripts.buffer} --bilp ... --buffer_path OTHER)")


def check_scores_given(args: Any, config: BiLPConfig, scripts: Scripts) -> None:
    """The distillation script passes no images to score on the fly: it needs the score file the experts used."""
    if not config.level1 or config.criterion == "random" or config.scores is not None:
        return
    recorded = read_subset(expert_dir(args))
    used = f" ({recorded['scores']} for the experts in {expert_dir(args)})" if recorded and recorded["scores"] else ""
    raise BiLPError(f"{scripts.distill} --bilp --bilp-criterion {config.criterion} needs --bilp-scores FILE: pass the "
                    f"score file {scripts.buffer} used{used}")


def record_or_verify(args: Any, config: BiLPConfig, subset: Subset, stage: str, scripts: Scripts) -> None:
    """The adapters' ``after_level1``: the training script (``stage`` ``"buffer"``) records this run's subset in its
    expert folder; the distillation script refuses experts of another subset."""
    described = describe_subset(subset.labels, subset.kept, config, subset.summary) | {"dataset": args.dataset}
    folder = expert_dir(args)
    if stage == "buffer":
        record_subset(folder, described, subset.kept)
    else:
        verify_subset(folder, described, scripts)
