"""``bilp ablate``: the paper's Table 5 on a host: no pruning, level 1 only, level 1 + pruning the small or the large
ITE tail, both (:mod:`bilp_plugin.lab.ablate`)."""

from __future__ import annotations

import argparse

from bilp_plugin.commands.flags import add_budget_flag, add_host_flags


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ablate", help="Table 5: accuracy without pruning, with level 1, with level 1 and each ITE "
                                      "tail pruned, with both (resumable)")
    add_host_flags(p, iterations=100, seeds="0,1,2")
    p.add_argument("--alpha", type=float, default=0.5, help="level-1 pruning rate of every pruned setting")
    p.add_argument("--beta", type=float, default=0.2, help="level-2 pruning rate of the ITE settings")
    p.add_argument("--out", default="bilp_ablate", help="ablation folder (reused: finished points are kept)")
    add_budget_flag(p)
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from bilp_plugin.lab import ablate

    return ablate.run(args)
