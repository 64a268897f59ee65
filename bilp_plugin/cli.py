"""Command lines: ``bilp`` (its subcommands are :mod:`bilp_plugin.commands`, each owning its parser and handler)
and ``bilp-apply`` (:mod:`bilp_plugin.commands.apply`). This module only assembles them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bilp_plugin import __version__, files
from bilp_plugin.commands import ablate, apply, demo, launch, plugins, prune, report, score, subset, sweep
from bilp_plugin.errors import BiLPError

COMMANDS = (plugins, score, prune, demo, report, sweep, ablate, launch, subset)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bilp", description="BiLP: bi-level data pruning for dataset distillation")
    parser.add_argument("--version", action="version", version=f"bilp-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run its handler; a :class:`BiLPError`, and an :class:`OSError` (a full disk, a
    permission, a name the file system refuses), is one line and exit status 2."""
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BiLPError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
    except OSError as err:
        print(f"{parser.prog}: error: {files.os_error(err)}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)


def apply_main(argv: Sequence[str] | None = None) -> int:
    return run(apply.build_parser(), argv)
