"""Command line: ``bilp plugins|score|prune|demo|report|sweep`` and ``bilp-apply``. Parsers only; the work lives
in the modules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from bilp_plugin import __version__
from bilp_plugin.errors import BiLPError

Command = Callable[[argparse.Namespace], int]


def _plugins(args: argparse.Namespace) -> int:
    from bilp_plugin.manager import get_manager

    manager = get_manager()
    for upstream in args.adapter or []:
        manager.register_adapter(upstream)
    rows = manager.plugins()
    width = max(len(name) for name, _ in rows)
    for name, hooks in rows:
        print(f"{name:<{width}}  {', '.join(hooks) or '-'}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from bilp_plugin.scoring import score_command

    return score_command(args)


def _prune(args: argparse.Namespace) -> int:
    from bilp_plugin.preemptive import prune_command

    return prune_command(args)


def _demo(args: argparse.Namespace) -> int:
    from bilp_plugin.demo import demo_command

    return demo_command(args)


def _report(args: argparse.Namespace) -> int:
    from bilp_plugin.report import report_command

    return report_command(args)


def _sweep(args: argparse.Namespace) -> int:
    from bilp_plugin.sweep import sweep_command

    return sweep_command(args)


def _add_data_flags(p: argparse.ArgumentParser, required: bool) -> None:
    from bilp_plugin.datasets import DATASETS

    p.add_argument("--dataset", choices=DATASETS, required=required,
                   help="dataset name (digits ships with scikit-learn; the others read --data-root)")
    p.add_argument("--data-root", default=os.environ.get("BILP_DATA"),
                   help="folder holding the torchvision layouts (default: $BILP_DATA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilp", description="BiLP: bi-level data pruning for dataset distillation")
    parser.add_argument("--version", action="version", version=f"bilp-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list registered plugins and the hooks each implements")
    p.add_argument("--adapter", action="append", choices=("builtin", "dc", "mtt", "idc", "idm"),
                   help="also register this upstream's adapter (needs the upstream on sys.path to run it)")
    p.set_defaults(run=_plugins)

    p = sub.add_parser("score", help="level 1: score every training sample by its empirical loss")
    _add_data_flags(p, required=True)
    p.add_argument("--model", default="convnet", help="convnet (ConvNet-D, width W, instance norm, as in DC)")
    p.add_argument("--width", type=int, default=128, help="ConvNet width")
    p.add_argument("--depth", type=int, default=3, help="ConvNet depth")
    p.add_argument("--epochs", type=int, default=10, help="training epochs per trial")
    p.add_argument("--trials", type=int, default=1, help="independent trials (seeds seed..seed+T-1) averaged")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--mode", choices=("mean", "final"), default="mean",
                   help="mean: loss of the training forward passes, averaged over epochs; final: loss of the "
                        "trained network in eval mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--out", required=True, help="score file to write (.npz)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(run=_score)

    p = sub.add_parser("prune", help="level 1: keep per class the (1 - alpha) lowest-score samples")
    p.add_argument("--scores", help="score file (.npz, or the authors' JSON list with --dataset)")
    _add_data_flags(p, required=False)
    p.add_argument("--alpha", type=float, required=True, help="share of each class pruned, in [0, 1)")
    p.add_argument("--criterion", choices=("loss", "random", "stratum"), default="loss")
    p.add_argument("--stratum", type=int, help="with --criterion stratum: decile K (1..10, S1 = largest loss)")
    p.add_argument("--seed", type=int, default=0, help="seed of --criterion random")
    p.add_argument("--out", required=True, help="kept indices to write (.npy, int64, ascending); a .json "
                                                 "summary is written beside it")
    p.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    p.set_defaults(run=_prune)

    from bilp_plugin import demo, sweep

    p = sub.add_parser("demo", help="score, prune, distill with and without BiLP, evaluate, compare, report",
                       description=demo.__doc__.splitlines()[0])
    demo.add_arguments(p)
    p.set_defaults(run=_demo)

    p = sub.add_parser("report", help="Markdown summary and PNG plots from run records")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run-record folders, or folders above them")
    p.add_argument("--out", default="bilp_report", help="folder for report.md and the PNGs")
    p.set_defaults(run=_report)

    p = sub.add_parser("sweep", help="largest alpha whose accuracy stays within the baseline's std, by loss and "
                                     "by random selection (resumable)")
    sweep.add_arguments(p)
    p.set_defaults(run=_sweep)
    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BiLPError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


def _apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    import bilp_adapters
    from bilp_plugin import apply

    if args.status:
        targets = ([apply.Manifest.load(args.adapter)] if args.adapter
                   else apply.manifests(Path(bilp_adapters.__file__).parent))
        print_table([apply.status_row(m, args.upstream) for m in targets])
        return 0
    if not args.adapter:
        raise BiLPError("name an adapter folder (e.g. adapters/dc), or pass --status")
    manifest = apply.Manifest.load(args.adapter)
    if args.revert:
        print(apply.revert(manifest, args.upstream))
    else:
        print(apply.apply(manifest, args.upstream, check=args.check))
    return 0


def print_table(rows: list[dict[str, str]]) -> None:
    """Rows of equal keys as aligned columns."""
    if not rows:
        return
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
    print("  ".join(f"{k:<{w}}" for k, w in widths.items()))
    for r in rows:
        print("  ".join(f"{str(r[k]):<{w}}" for k, w in widths.items()))


def build_apply_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bilp-apply", description="apply an adapter's patch series to its upstream checkout (all or nothing)")
    parser.add_argument("adapter", nargs="?", help="adapter folder, e.g. adapters/dc")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="dry run: prove the series applies, change nothing")
    mode.add_argument("--revert", action="store_true", help="back to the pinned commit's files, byte-identical")
    mode.add_argument("--status", action="store_true",
                      help="table of every adapter: path, commit, pinned, patched, clean")
    parser.add_argument("--upstream", help="patch this clone of the upstream instead of the submodule")
    parser.set_defaults(run=_apply)
    return parser


def apply_main(argv: Sequence[str] | None = None) -> int:
    return run(build_apply_parser(), argv)
