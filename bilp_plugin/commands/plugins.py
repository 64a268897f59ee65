"""``bilp plugins``: every registered plugin and adapter, and the hooks each implements."""

from __future__ import annotations

import argparse

from bilp_plugin.manager import adapter_entry_points, get_manager


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("plugins", help="list registered plugins and adapters and the hooks each implements")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    manager = get_manager()
    for upstream in adapter_entry_points():
        manager.register_adapter(upstream)
    rows = manager.plugins()
    width = max(len(name) for name, _ in rows)
    for name, hooks in rows:
        print(f"{name:<{width}}  {', '.join(hooks) or '-'}")
    return 0
