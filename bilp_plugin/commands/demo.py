"""``bilp demo``: score, prune, distill with and without BiLP, evaluate, compare, report
(:mod:`bilp_plugin.lab.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bilp_plugin.commands.flags import add_host_flags, check_host_flags, file_name, listed
from bilp_plugin.config import argtype, ratio_type
from bilp_plugin.lab import demo
from bilp_plugin.lab.curve import parse_alphas


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("demo", help="score, prune, distill with and without BiLP, evaluate, compare, report",
                       description="Score, prune and distill with and without BiLP, evaluate and compare: baseline, "
                                   "level 1, levels 1+2 and a random subset of equal size (docs/demo.md).")
    add_host_flags(p, iterations=100, seeds="0,1,2")
    p.add_argument("--alpha", type=ratio_type("--alpha"), default=0.5,
                   help="level-1 pruning rate (share of each class pruned)")
    p.add_argument("--beta", type=ratio_type("--beta"), default=0.2,
                   help="level-2 pruning rate (share of each real batch)")
    p.add_argument("--curve", action=argparse.BooleanOptionalAction, default=True,
                   help="also run level 1 by loss and by random selection at each --curve-alphas: the accuracy-"
                        "against-alpha curve and each criterion's max pruning ratio (Tables 1-2, Fig. 2)")
    p.add_argument("--curve-alphas", type=listed(lambda text: parse_alphas(text, "--curve-alphas")),
                   default="0.3,0.5,0.7,0.9", help="comma-separated alphas of the curve")
    p.add_argument("--strata", action=argparse.BooleanOptionalAction, default=True,
                   help="also distill from each loss decile S1..S10 (Fig. 3), at the first seed")
    p.add_argument("--out", type=argtype(file_name), default="bilp_demo", help="output folder")
    p.add_argument("--force", action="store_true", help="replace an existing demo folder")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    demo.check_out(Path(args.out), args.force)
    check_host_flags(args)
    return demo.run(demo.DemoSettings.from_options(args))
