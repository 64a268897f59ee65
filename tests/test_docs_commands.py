"""``docs_commands.run`` times each top-level command of a page's script from bash's trace."""

from __future__ import annotations

from pathlib import Path

from docs_commands import run


def test_each_top_level_command_is_timed(tmp_path: Path) -> None:
    ran = run("echo one\nsleep 0.3\nx=$(echo two)\n", tmp_path, {})
    assert [c for c, _ in ran.commands] == ["echo one", "sleep 0.3", "x=two"]  # the subshell is part of x=...
    took = dict(ran.commands)
    assert 0.25 < took["sleep 0.3"] < ran.seconds and took["echo one"] < 0.25
    assert ran.stdout == "one\n" and not (tmp_path / ".commands.trace").exists()
