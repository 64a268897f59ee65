"""``bilp-apply ADAPTER [--check|--revert] [--upstream PATH]`` and ``bilp-apply --status``: patch an upstream
checkout with its adapter's series, all or nothing (:mod:`bilp_plugin.tools.apply`)."""

from __future__ import annotations

import argparse

from bilp_plugin.errors import BiLPError
from bilp_plugin.tools import apply


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bilp-apply", description="apply an adapter's patch series to its upstream checkout (all or nothing)")
    parser.add_argument("adapter", nargs="?", help="adapter name (e.g. dc) or folder (e.g. adapters/dc)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="dry run: prove the series applies, change nothing")
    mode.add_argument("--revert", action="store_true", help="back to the pinned commit's files, byte-identical")
    mode.add_argument("--status", action="store_true",
                      help="table of every adapter: path, commit, pinned, patched, clean")
    parser.add_argument("--upstream", help="patch this clone of the upstream instead of the submodule")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.status:
        if args.upstream and not args.adapter:
            raise BiLPError(f"--upstream is one upstream's clone: name its adapter "
                            f"({', '.join(m.name for m in apply.manifests())}), e.g. `bilp-apply dc --status "
                            f"--upstream {args.upstream}`")
        targets = [apply.find_manifest(args.adapter)] if args.adapter else apply.manifests()
        print_table([apply.status_row(m, args.upstream) for m in targets])
        return 0
    if not args.adapter:
        raise BiLPError(f"name an adapter ({', '.join(m.name for m in apply.manifests())}), or pass --status")
    manifest = apply.find_manifest(args.adapter)
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
