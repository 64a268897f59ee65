"""The hook spec and the plugin manager: built-ins, overrides of each hook, listing, documentation."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bilp_plugin import hookimpl, hookspecs
from bilp_plugin.method.level2 import Selection, SelectionState
from bilp_plugin.config import BiLPConfig, ScoringConfig
from bilp_plugin.method.realset import RealSet
from bilp_plugin.manager import PluginManager
from bilp_plugin.method.scorefile import ScoreFile
from bilp_plugin.method.matchstep import MatchStep

HOOKS = sorted(name for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "bilp_spec"))
"""Every hook of the spec (the registry drives the documentation and coverage tests)."""
DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def _realset() -> RealSet:
    return RealSet(name="toy", images=torch.zeros(4, 1, 2, 2), labels=torch.tensor([0, 1, 0, 1]), num_classes=2,
                   mean=(0.0,), std=(1.0,))


class Override:
    @hookimpl(tryfirst=True)
    def score_samples(self, dataset: RealSet, config: ScoringConfig) -> ScoreFile:
        return ScoreFile(np.full(len(dataset.labels), 7.0), dataset.labels.numpy(), {"by": "override"})

    @hookimpl
    def meta_grad(self, step: MatchStep, method: str) -> torch.Tensor:
        return torch.arange(len(step.real), dtype=torch.float)

    @hookimpl(tryfirst=True)
    def filter_batch(self, norms: torch.Tensor, cls: int, state: SelectionState, config: BiLPConfig) -> Selection:
        return Selection(keep=norms < 2)


def test_builtins_are_registered_once() -> None:
    manager = PluginManager()
    manager.load()
    manager.load()
    names = dict(manager.plugins())
    assert names["bilp_plugin.method.empirical_loss"] == ["score_samples"]
    assert names["bilp_plugin.method.scorefile"] == ["score_samples"]
    assert names["bilp_plugin.method.level2"] == ["filter_batch"]


def test_a_plugin_overrides_every_hook(tmp_path: Path) -> None:
    manager = PluginManager()
    manager.register(Override(), name="override")
    assert manager.score_samples(_realset(), ScoringConfig()).meta == {"by": "override"}
    step = MatchStep("toy", 0, torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.nn.Identity(), None, None)
    norms = manager.meta_grad(step, "exact")
    assert norms.tolist() == [0, 1, 2, 3]
    keep = manager.filter_batch(norms, 0, SelectionState(0.1), BiLPConfig(beta=0.5)).keep
    assert keep.tolist() == [True, True, False, False]


def test_declining_falls_through_to_the_builtin() -> None:
    class Declines:
        @hookimpl(tryfirst=True)
        def filter_batch(self, norms, cls, state, config):  # noqa: ANN001, ANN201
            return None

    manager = PluginManager()
    manager.register(Declines(), name="declines")
    selection = manager.filter_batch(torch.ones(8), 0, SelectionState(0.1), BiLPConfig(beta=0.2))
    assert selection.keep.all()  # zero variance: the built-in keeps everything


def test_bilp_plugins_lists_hooks_per_plugin() -> None:
    out = subprocess.run([sys.executable, "-m", "bilp_plugin", "plugins"], capture_output=True, text=True,
                         check=True).stdout
    assert re.search(r"bilp_plugin\.method\.level2\s+filter_batch", out)
    assert re.search(r"bilp_plugin\.method\.empirical_loss\s+score_samples", out)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    spec = getattr(hookspecs, hook)
    params = ", ".join(inspect.signature(spec).parameters)
    assert f"## {hook}({params})" in DOCS.read_text()
    assert "Called by" in (spec.__doc__ or "")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    tests = "".join(p.read_text() for p in Path(__file__).parent.rglob("*.py"))  # tests and their plugins
    assert f"def {hook}(" in tests
