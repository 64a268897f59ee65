"""``bilp prune``: level 1 from a score file: per class, the kept dataset indices (``.npy``) and a summary
(``.json``) beside them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bilp_plugin.commands.flags import add_data_flags
from bilp_plugin.config import CRITERIA, check_ratio, check_stratum
from bilp_plugin.errors import BiLPError
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import level1, scorefile


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("prune", help="level 1: keep per class the (1 - alpha) lowest-score samples")
    p.add_argument("--scores", help="score file (.npz, or the authors' JSON list with --dataset)")
    add_data_flags(p, required=False)
    p.add_argument("--alpha", type=float, required=True, help="share of each class pruned, in [0, 1)")
    p.add_argument("--criterion", choices=CRITERIA, default="loss")
    p.add_argument("--stratum", type=int, help="with --criterion stratum: decile K (1..10, S1 = largest loss)")
    p.add_argument("--seed", type=int, default=0, help="seed of --criterion random")
    p.add_argument("--out", required=True, help="kept indices to write (.npy, int64, ascending); a .json "
                                                 "summary is written beside it")
    p.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Write the kept indices (``.npy``) and a JSON summary beside them."""
    check_ratio("--alpha", args.alpha)
    check_stratum(args.stratum)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise BiLPError(f"--out must name a .npy file, got {out}")
    out_json = out.with_suffix(".json")
    for path in (out, out_json):
        if path.exists() and not args.force:
            raise BiLPError(f"{path} exists: pass --force to overwrite it")
    if args.scores is None and args.criterion != "random":
        raise BiLPError(f"--criterion {args.criterion} needs --scores FILE")
    score_file = scorefile.load(args.scores) if args.scores else None
    labels = score_file.labels if score_file is not None else None
    dataset = score_file.meta.get("dataset") if score_file is not None else None
    if args.dataset:
        labels, dataset = load_dataset(args.dataset, args.data_root).labels.numpy(), args.dataset
    if labels is None:
        raise BiLPError(f"{args.scores} carries no labels (an authors' JSON list): pass --dataset NAME "
                        "(and --data-root DIR) to read them")
    if score_file is not None:
        scorefile.check_matches(score_file, labels, dataset)
    kept = level1.select(score_file.scores if score_file else None, labels, args.alpha, args.criterion, args.seed,
                         args.stratum)
    record = level1.summary(kept, labels, dataset=dataset, alpha=args.alpha, criterion=args.criterion,
                            stratum=args.stratum, seed=args.seed, scores=args.scores,
                            scores_sha256=score_file.sha256 if score_file else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, kept)
    out_json.write_text(json.dumps(record, indent=1))
    print(f"kept {len(kept)} of {record['n']} samples ({args.criterion}, alpha={args.alpha}) -> {out}")
    return 0
