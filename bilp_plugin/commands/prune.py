"""``bilp prune``: level 1 from a score file: per class, the kept dataset indices (``.npy``) and a summary
(``.json``) beside them.

Both are written atomically, the summary first: it holds the sha256 of the ``.npy`` it describes, so a kill
between the two leaves a summary that does not match its ``.npy`` (absent or older), never a partial file; the
rerun of the same command replaces such an unfinished pair without ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin import files
from bilp_plugin.commands.flags import add_data_flags, file_name
from bilp_plugin.config import CRITERIA, argtype, check_stratum, ratio_type, seed_type
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import folders
from bilp_plugin.lab.datasets import data_root, load_dataset
from bilp_plugin.logs import say
from bilp_plugin.method import level1, scorefile

FORMAT = "bilp-kept/1"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("prune", help="level 1: keep per class the (1 - alpha) lowest-score samples")
    p.add_argument("--scores", type=argtype(file_name),
                   help="score file (.npz, or the authors' JSON list with --dataset)")
    add_data_flags(p, required=False)
    p.add_argument("--alpha", type=ratio_type("--alpha"), required=True,
                   help="share of each class pruned, in [0, 1)")
    p.add_argument("--criterion", choices=CRITERIA, default="loss")
    p.add_argument("--stratum", type=argtype(int, check_stratum),
                   help="with --criterion stratum: decile K (1..10, S1 = largest loss)")
    p.add_argument("--seed", type=seed_type("--seed"), default=0, help="seed of --criterion random")
    p.add_argument("--out", required=True, type=argtype(file_name),
                   help="kept indices to write (.npy, int64, ascending); a .json summary is written beside it")
    p.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    p.set_defaults(run=run)
    return p


def unfinished(out: Path, out_json: Path) -> bool:
    """Whether ``out_json`` is the summary of a write of this pair that was killed before its ``.npy``."""
    try:
        summary = json.loads(out_json.read_text())
        expected = summary["kept_sha256"] if summary.get("format") == FORMAT else None
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return False
    return expected is not None and (not out.is_file() or scorefile.file_sha256(out) != expected)


def check(args: argparse.Namespace) -> tuple[Path, Path]:
    """Every flag, together, before any work; returns the two outputs."""
    out = Path(args.out)
    if out.suffix != ".npy":
        raise BiLPError(f"--out must name a .npy file, got {out}")
    out_json = out.with_suffix(".json")
    if (args.criterion == "stratum") != (args.stratum is not None):
        raise BiLPError("--criterion stratum needs --stratum K (1..10), and --stratum needs --criterion stratum")
    if args.scores is None and args.criterion != "random":
        raise BiLPError(f"--criterion {args.criterion} needs --scores FILE")
    if args.scores is None and not args.dataset:
        raise BiLPError("--criterion random needs the labels: pass --dataset NAME (and --data-root DIR), or "
                        "--scores FILE")
    replace = args.force or unfinished(out, out_json)
    for path in (out, out_json):
        files.check_new_file(path, "--out", replace)
    if replace and not args.force:
        say(f"replacing {out} and {out_json}, left unfinished by an interrupted bilp prune")
    return out, out_json


def run(args: argparse.Namespace) -> int:
    """Write the kept indices (``.npy``) and a JSON summary beside them."""
    out, out_json = check(args)
    score_file = scorefile.load(args.scores) if args.scores else None
    labels = score_file.labels if score_file is not None else None
    dataset = score_file.meta.get("dataset") if score_file is not None else None
    files_listed = None
    if args.dataset == "imagefolder":  # its files (their checksum binds the score file), without their pixels
        files_listed, labels, _ = folders.image_files(data_root(args.data_root))
        dataset = args.dataset
    elif args.dataset:
        labels, dataset = load_dataset(args.dataset, args.data_root).labels.numpy(), args.dataset
    if labels is None:
        raise BiLPError(f"{args.scores} carries no labels (an authors' JSON list): pass --dataset NAME "
                        "(and --data-root DIR) to read them")
    if score_file is not None:
        scorefile.check_matches(score_file, labels, dataset, files_listed)
    kept = level1.select(score_file.scores if score_file else None, labels, args.alpha, args.criterion, args.seed,
                         args.stratum)
    data = io.BytesIO()
    np.save(data, kept, allow_pickle=False)
    record = level1.summary(kept, labels, format=FORMAT, dataset=dataset, alpha=args.alpha,
                            criterion=args.criterion, stratum=args.stratum, seed=args.seed, scores=args.scores,
                            scores_sha256=score_file.sha256 if score_file else None, kept_file=out.name,
                            kept_sha256=hashlib.sha256(data.getvalue()).hexdigest())
    write_pair(out, data.getvalue(), out_json, record)
    print(f"kept {len(kept)} of {record['n']} samples ({args.criterion}, alpha={args.alpha}) -> {out}")
    return 0


def write_pair(out: Path, kept: bytes, out_json: Path, record: dict[str, Any]) -> None:
    """The summary (naming the ``.npy``'s sha256), then the ``.npy``: each atomically (module docstring)."""
    files.write_json(out_json, record)
    files.write_bytes(out, kept)
