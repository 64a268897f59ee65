"""``bilp sweep``: the maximum pruning ratio of loss and random selection (Tables 1-2; :mod:`bilp_plugin.lab.sweep`)."""

from __future__ import annotations

import argparse

from bilp_plugin.commands.flags import add_host_flags


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="largest alpha whose accuracy stays within the baseline's std, by loss and "
                                     "by random selection (resumable)")
    add_host_flags(p, iterations=100, seeds="0,1,2")
    p.add_argument("--alphas", default="0.3,0.5,0.7,0.9", help="comma-separated level-1 pruning rates")
    p.add_argument("--criteria", default="loss,random", help="comma-separated: loss, random")
    p.add_argument("--strata", default="", help="comma-separated loss deciles K (1 = largest loss) to distill from "
                                                 "alone, per seed (Fig. 3), e.g. 1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--out", default="bilp_sweep", help="sweep folder (reused: finished points are kept)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from bilp_plugin.lab import sweep

    return sweep.run(args)
