"""docs/adapters.md's recipe for a new in-tree adapter, checked against every in-tree adapter (each
``adapters/*/manifest.toml``): each file the recipe names exists, each edit it names is made; and its ``plugin.py``
skeleton registers as an adapter (pluggy checks every implementation against the spec)."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path

import pytest

from bilp_plugin.manager import PluginManager
from bilp_plugin.tools import apply

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "adapters.md").read_text()
RECIPE = DOC.split("## A new in-tree adapter: every file and edit", 1)[1].split("\n## ", 1)[0]
STEPS = re.findall(r"^\d+\. `([^`]+)`(.*?)(?=^\d+\. |^Nothing else|\Z)", RECIPE, re.M | re.S)
"""(path, text) of each numbered step, in order."""
ADAPTERS = sorted(p.parent.name for p in (ROOT / "adapters").glob("*/manifest.toml"))


def test_the_recipe_names_every_part() -> None:
    paths = [path for path, _ in STEPS]
    assert len(paths) == 11 and paths[0] == "third_party/<Upstream>"
    for part in ("adapters/<name>/plugin.py", "adapters/<name>/manifest.toml", "patches/<name>/", "pyproject.toml",
                 "README.md", "docs/adapter-<name>.md", "tests/test_adapter_<name>.py"):
        assert part in paths


@pytest.mark.parametrize("name", ADAPTERS)
def test_every_in_tree_adapter_follows_the_recipe(name: str) -> None:
    manifest = apply.Manifest.load(ROOT / "adapters" / name)
    upstream = Path(manifest.path).name
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for path, text in STEPS:
        concrete = path.replace("<name>", name).replace("<Upstream>", upstream)
        if path == "third_party/<Upstream>":
            assert f"path = {manifest.path}" in (ROOT / ".gitmodules").read_text(), f"{name}: no submodule entry"
        elif path == "pyproject.toml":
            assert pyproject["project"]["entry-points"]["bilp.adapters"][name] == f"bilp_adapters.{name}.plugin"
            assert f"bilp_adapters.{name}" in pyproject["tool"]["setuptools"]["packages"]
        elif path == "README.md":
            assert f"docs/adapter-{name}.md" in (ROOT / "README.md").read_text(), f"{name}: README links no page"
        elif path == "patches/<name>/":
            assert manifest.patches and all((ROOT / concrete / p).is_file() for p in manifest.patches), name
            assert any("bilp-hooks" in p for p in manifest.patches), f"{name}: no hook patch"
        elif "(optional)" not in text.split(":", 1)[0]:
            assert (ROOT / concrete).is_file(), f"{name}: the recipe's {concrete} is missing"


def test_the_plugin_skeleton_registers_as_an_adapter() -> None:
    section = DOC.split("## `plugin.py`", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0].replace("<name>", "recipe")
    module = types.ModuleType("recipe_plugin")
    exec(compile(code, "docs/adapters.md", "exec"), module.__dict__)
    manager = PluginManager()
    manager.register_adapter("recipe", module)  # pluggy refuses an implementation whose arguments the spec lacks
    hooks = dict(manager.plugins())["adapter:recipe"]
    assert {"meta_grad", "check_run", "check_level1", "make_host"} <= set(hooks)
