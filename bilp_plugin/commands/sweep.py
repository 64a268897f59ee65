"""``bilp sweep``: the maximum pruning ratio of loss and random selection (Tables 1-2; :mod:`bilp_plugin.lab.sweep`)."""

from __future__ import annotations

import argparse

from bilp_plugin.commands.flags import add_budget_flag, add_host_flags, check_host_flags, file_name, listed
from bilp_plugin.config import argtype
from bilp_plugin.lab import curve, sweep


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("sweep", help="largest alpha whose accuracy stays within the baseline's std, by loss and "
                                     "by random selection (resumable)")
    add_host_flags(p, iterations=100, seeds="0,1,2")
    p.add_argument("--alphas", type=listed(curve.parse_alphas), default="0.3,0.5,0.7,0.9",
                   help="comma-separated level-1 pruning rates")
    p.add_argument("--criteria", type=listed(curve.parse_criteria), default="loss,random",
                   help="comma-separated: loss, random")
    p.add_argument("--strata", type=listed(curve.parse_strata), default="",
                   help="comma-separated loss deciles K (1 = largest loss) to distill from alone, per seed (Fig. 3), "
                        "e.g. 1,2,3,4,5,6,7,8,9,10")
    p.add_argument("--out", type=argtype(file_name), default="bilp_sweep",
                   help="sweep folder (reused: finished points are kept)")
    add_budget_flag(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_host_flags(args)
    return sweep.run(sweep.SweepSettings.from_options(args))
