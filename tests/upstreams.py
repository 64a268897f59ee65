"""Helpers for integration tests against the real upstreams: copies of their files at any point of the patch
series (outside ``third_party/``, which tests never modify), and reproducible launches of their scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import git
import pytest

from bilp_plugin.tools import apply

ROOT = Path(__file__).resolve().parent.parent


def manifest(name: str) -> apply.Manifest:
    return apply.Manifest.load(ROOT / "adapters" / name)


def repo_or_skip(name: str) -> git.Repo:
    """The upstream's submodule checkout; skips (visibly) when it is not initialised."""
    m = manifest(name)
    if not (m.checkout / ".git").exists():
        pytest.skip(f"submodule {m.path} is not initialised: run `git submodule update --init {m.path}`")
    return git.Repo(m.checkout)


def materialise(name: str, dest: Path, upto: int | None = None) -> Path:
    """The upstream's files at the pinned commit with the first ``upto`` patches (all when None) applied."""
    repo_or_skip(name).close()
    return apply.export_patched(manifest(name), dest, upto)


def clone(name: str, dest: Path) -> Path:
    """A clone of the upstream's submodule at its pinned commit, for tests that patch a checkout (``--upstream``);
    sparse, without them, where the local mirror lacks some blobs (MTT's GIFs)."""
    m = manifest(name)
    repo_or_skip(name).close()

    def git(*args: str, cwd: Path = dest) -> str:
        return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout

    git("clone", "-q", "--no-checkout", "--shared", str(m.checkout), str(dest), cwd=dest.parent)
    missing = []
    for line in git("ls-tree", "-r", m.commit).splitlines():
        meta, path = line.split("\t", 1)
        if subprocess.run(["git", "cat-file", "-e", meta.split()[2]], cwd=dest).returncode:
            missing.append(f"!/{path}")
    if missing:
        git("sparse-checkout", "set", "--no-cone", "/*", *missing)
    git("checkout", "-q", m.commit)
    return dest


def launch(script: Path, args: list[str], cwd: Path, seed: int = 0, timeout: float = 900,
           extra_env: dict[str, str] | None = None, launcher_flags: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess[str]:
    """Run ``script`` through ``bilp launch`` (seeded, fake clock, 2 threads); raises with
    the script's output when it fails."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    cmd = [sys.executable, "-m", "bilp_plugin", "launch", "--seed", str(seed), "--fake-clock", "--threads", "2",
           *launcher_flags, str(script), "--", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


@contextmanager
def importable(root: Path) -> Iterator[None]:
    """``root`` first on ``sys.path``; every module imported from it is forgotten on exit."""
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            module = sys.modules[name]
            origin = getattr(module, "__file__", None) or " ".join(getattr(module, "__path__", None) or [])
            if str(root) in origin:
                del sys.modules[name]
