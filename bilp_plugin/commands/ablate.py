"""``bilp ablate``: the paper's Table 5 on a host: no pruning, level 1 only, level 1 + pruning the small or the large
ITE tail, both (:mod:`bilp_plugin.lab.ablate`)."""

from __future__ import annotations

import argparse

from bilp_plugin.commands.flags import add_budget_flag, add_host_flags, check_host_flags, file_name
from bilp_plugin.config import argtype, ratio_type
from bilp_plugin.lab import ablate


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ablate", help="Table 5: accuracy without pruning, with level 1, with level 1 and each ITE "
                                      "tail pruned, with both (resumable)")
    add_host_flags(p, iterations=100, seeds="0,1,2")
    p.add_argument("--alpha", type=ratio_type("--alpha"), default=0.5,
                   help="level-1 pruning rate of every pruned setting")
    p.add_argument("--beta", type=ratio_type("--beta"), default=0.2, help="level-2 pruning rate of the ITE settings")
    p.add_argument("--out", type=argtype(file_name), default="bilp_ablate",
                   help="ablation folder (reused: finished points are kept)")
    add_budget_flag(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    check_host_flags(args)
    return ablate.run(ablate.AblateSettings.from_options(args))
