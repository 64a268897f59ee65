"""Run the commands a Markdown page shows, as a user would, in a sandbox project with tiny settings.

A page's ```` ```sh ```` blocks are its commands (other fences, ```` ```text ````, ```` ```python ````, are not
run). They run in order, as one ``bash -euo pipefail`` script, in a sandbox shaped like a fresh clone of this
project: ``adapters/<name>/manifest.toml``, ``patches/<name>/`` and a clone of each upstream submodule at its pinned
commit (``third_party/...``; the page's ``git submodule update --init`` lines are what made them, so they are not
run again), with this checkout's ``bilp``, ``bilp-apply`` and ``python`` first on ``PATH`` (or, for a page that
activates ``.venv`` itself, as the README does, only there: :func:`with_venv`). Tiny settings come from
substitutions the test names (``"--Iteration 1000" -> "--Iteration 2"``); each must occur in the page, so a page
edit that drops one fails the test instead of silently running the full size.
"""

from __future__ import annotations

import os
import re
import shutil
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from upstreams import ROOT, clone, repo_or_skip

FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
SUBMODULE_INIT = re.compile(r"^git submodule update --init.*$", re.M)


def sh_blocks(page: Path, section: str | None = None) -> list[str]:
    """The page's ```` ```sh ```` blocks, in order (only those under the heading ``section``, up to the next
    heading of any level outside a fence, when given: a subsection is not part of its parent)."""
    text = page.read_text()
    if section is not None:
        text = text[text.index(f"\n{section}\n") + len(section) + 2:]
        fenced = False
        for match in re.finditer(r"^(```|#{1,6} ).*$", text, re.M):
            fenced ^= match.group(1) == "```"
            if not fenced and match.group(1) != "```":
                text = text[:match.start()]
                break
    return FENCE.findall(text)


def script(page: Path, substitutions: dict[str, str], section: str | None = None) -> str:
    """The page's commands as one script, tiny: every substitution is applied and must occur at least once."""
    text = "\n".join(sh_blocks(page, section))
    for old, new in substitutions.items():
        if old not in text:
            raise AssertionError(f"{page.name} no longer contains {old!r}: update the test's tiny settings")
        text = text.replace(old, new)
    return SUBMODULE_INIT.sub("true  # the sandbox's submodule is already cloned", text)


def sandbox(root: Path, adapters: list[str]) -> Path:
    """A project folder shaped like a fresh clone, with the upstreams of ``adapters`` at their pinned commits."""
    for name in adapters:
        repo_or_skip(name).close()
        (root / "adapters" / name).mkdir(parents=True)
        shutil.copy(ROOT / "adapters" / name / "manifest.toml", root / "adapters" / name / "manifest.toml")
        shutil.copytree(ROOT / "patches" / name, root / "patches" / name)
        manifest_path = (ROOT / "adapters" / name / "manifest.toml").read_text()
        checkout = root / re.search(r'^path = "(.*)"$', manifest_path, re.M).group(1)
        checkout.parent.mkdir(parents=True, exist_ok=True)
        clone(name, checkout)
    return root


def with_venv(root: Path) -> dict[str, str]:
    """``root/.venv``: the virtual environment this test runs in, as the README's first section makes it in a
    fresh clone; returns the environment for :func:`run` with that environment's ``bin`` off ``PATH``, so that a
    page's bare ``bilp`` or ``python`` fails unless the page activates ``.venv``."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the page activates .venv: run the tests from a virtual environment (the README's set-up)")
    (root / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    bindir = Path(sys.executable).parent.resolve()
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != bindir]
    return {"PATH": os.pathsep.join(path), "VIRTUAL_ENV": ""}


@dataclass
class Ran:
    stdout: str
    stderr: str
    seconds: float
    commands: list[tuple[str, float]]
    """Each top-level command of the script with its wall seconds, in order (from bash's trace)."""


TRACE = "+\t"


def command_times(trace: str, end: float) -> list[tuple[str, float]]:
    """Top-level commands and their seconds from an ``xtrace`` whose ``PS4`` is ``+<TAB>EPOCHREALTIME<TAB>``
    (subshell lines start with ``++`` and belong to the command that runs them)."""
    starts = [(float(t), cmd) for line in trace.splitlines() if line.startswith(TRACE)
              for _, t, cmd in [line.split("\t", 2)]]
    return [(cmd, (starts[i + 1][0] if i + 1 < len(starts) else end) - t) for i, (t, cmd) in enumerate(starts)]


def run(text: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> Ran:
    """Run ``text`` with bash (``-euo pipefail``) in ``cwd``; raises with the output tail when a command fails."""
    bindir = str(Path(sys.executable).parent)
    full_env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", **env}
    traced = f"exec {{trace}}>{shlex.quote(str(cwd / '.commands.trace'))}; BASH_XTRACEFD=$trace; " \
             "PS4=$'+\\t${EPOCHREALTIME}\\t'; set -x\n" + text
    start = time.perf_counter()
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", traced], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise AssertionError(f"the page's commands failed ({proc.returncode}) after {seconds:.0f} s:\n{text}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    trace = (cwd / ".commands.trace").read_text()
    (cwd / ".commands.trace").unlink()
    commands = command_times(trace, time.time())
    for command, took in commands:  # shown with pytest -s or -rP
        print(f"{took:8.1f} s  {command}")
    return Ran(proc.stdout, proc.stderr, seconds, commands)
