"""``bilp report RUN_DIR... [--out DIR]``: a Markdown summary and PNG plots from ``--bilp`` run records."""

from __future__ import annotations

import argparse
from pathlib import Path



def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="Markdown summary and PNG plots from run records")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run-record folders, or folders above them")
    p.add_argument("--out", default="bilp_report", help="folder for report.md and the PNGs")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from bilp_plugin.lab.report import write_report

    out = Path(args.out)
    report = write_report([Path(p) for p in args.runs], out)
    print(f"wrote {report} and {len(list(out.glob('*.png')))} plot(s)")
    return 0
