"""How far do two level-1 score files agree? Spearman rank correlation, overall and per class, and the overlap of
the sets that level 1 keeps at several pruning rates.

    python benchmarks/score_agreement.py --dataset cifar10 --data-root $BILP_DATA \\
        --scores ours=scores/cifar10.npz --scores authors-converge=$BILP_SCORES_DIR/CIFAR10_LossConverge.json \\
        --scores authors-init=$BILP_SCORES_DIR/CIFAR10_LossInit.json --out agreement.json

Every pair of the named files is compared. Ranks are average ranks (ties share their mean rank), so Spearman's rho
is the Pearson correlation of the ranks. Overlap at alpha: both files keep per class the ``n_c - floor(alpha n_c)``
lowest scores (:func:`bilp_plugin.method.level1.keep_lowest`, the rule every run uses); the overlap is the share
of one kept set that the other also keeps (the sets have equal size). Two unrelated score files would overlap by
about ``1 - alpha`` (the share a random subset of that size would hit): the JSON gives that chance level beside
each overlap. The JSON (``--out``) feeds ``benchmarks/reproduction_doc.py``; the Markdown goes to stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.method import level1, scorefile

ALPHAS = (0.5, 0.9, 0.99)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1 of ``values``, ties sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two equally long score vectors."""
    ra, rb = average_ranks(a), average_ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def overlap(a: np.ndarray, b: np.ndarray, labels: np.ndarray, alpha: float) -> float:
    """Share of the samples level 1 keeps by ``a`` at ``alpha`` that it also keeps by ``b``."""
    kept_a, kept_b = level1.keep_lowest(a, labels, alpha), level1.keep_lowest(b, labels, alpha)
    return len(np.intersect1d(kept_a, kept_b)) / len(kept_a)


def compare(a: np.ndarray, b: np.ndarray, labels: np.ndarray, alphas: tuple[float, ...] = ALPHAS) -> dict[str, Any]:
    classes = range(int(labels.max()) + 1)
    return {
        "spearman": spearman(a, b),
        "spearman_per_class": [spearman(a[labels == c], b[labels == c]) for c in classes],
        "overlap": {str(al): overlap(a, b, labels, al) for al in alphas},
        "chance_overlap": {str(al): sum(level1.kept_per_class(int(n), al) for n in np.bincount(labels))
                           / len(labels) for al in alphas},
    }


def _named(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--scores takes NAME=FILE, got {text!r}")
    return name, Path(path)


def markdown(report: dict[str, Any]) -> str:
    alphas = list(next(iter(report["pairs"].values()))["overlap"]) if report["pairs"] else []
    lines = ["| pair | Spearman (all) | per class: min / median / max | "
             + " | ".join(f"kept overlap a={a} (chance)" for a in alphas) + " |",
             "|---" * (3 + len(alphas)) + "|"]
    for pair, r in report["pairs"].items():
        per = np.asarray(r["spearman_per_class"])
        cells = [f"{r['overlap'][a]:.3f} ({r['chance_overlap'][a]:.3f})" for a in alphas]
        lines.append(f"| {pair} | {r['spearman']:.3f} | {per.min():.3f} / {np.median(per):.3f} / {per.max():.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--data-root", default=None, help="default: $BILP_DATA")
    p.add_argument("--scores", type=_named, action="append", required=True, help="NAME=FILE (.npz or .json); twice "
                   "or more")
    p.add_argument("--alphas", default=",".join(map(str, ALPHAS)))
    p.add_argument("--out", default=None, help="write the report as JSON here")
    args = p.parse_args(argv)
    if len(args.scores) < 2:
        p.error("name at least two --scores files")
    labels = load_dataset(args.dataset, args.data_root).labels.numpy()
    files = {}
    for name, path in args.scores:
        sf = scorefile.load(path)
        scorefile.check_matches(sf, labels, args.dataset)
        files[name] = sf
    alphas = tuple(float(a) for a in args.alphas.split(","))
    report = {
        "dataset": args.dataset, "n": len(labels),
        "files": {n: {"path": str(sf.path), "sha256": sf.sha256, "meta": sf.meta} for n, sf in files.items()},
        "pairs": {f"{a} vs {b}": compare(files[a].scores, files[b].scores, labels, alphas)
                  for a, b in itertools.combinations(files, 2)},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
