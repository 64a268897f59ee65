"""bilp-apply mechanics on small git repositories made here (no upstream code), and the real series."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from bilp_plugin.tools import apply
from bilp_plugin.cli import apply_main

ROOT = Path(__file__).resolve().parent.parent
IN_TREE = sorted(p.parent.name for p in (ROOT / "adapters").glob("*/manifest.toml"))
"""Every in-tree adapter with a patch series."""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` (outside .git) with the sha256 of its bytes."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and ".git" not in p.parts}


@pytest.fixture()
def project(tmp_path: Path) -> apply.Manifest:
    """A project with one adapter 'toy' whose upstream (CRLF files) sits at third_party/toy, and a series of
    three patches (compat, hooks, more hooks)."""
    up = tmp_path / "project" / "third_party" / "toy"
    up.mkdir(parents=True)
    git(up, "init", "-q", "-b", "main")
    git(up, "config", "user.email", "t@t"), git(up, "config", "user.name", "t")
    (up / "main.py").write_bytes(b"import os\r\nx = 1\r\nprint(x)\r\n")
    (up / "utils.py").write_bytes(b"def f(a):\n    return a.view(-1)\n")
    git(up, "add", "."), git(up, "commit", "-qm", "upstream")
    pinned = git(up, "rev-parse", "HEAD")
    git(up, "checkout", "-qb", "work")
    edits = [("utils.py", b"def f(a):\n    return a.reshape(-1)\n", "compat"),
             ("main.py", b"import os\r\nimport bilp\r\nx = 1\r\nprint(x)\r\n", "hooks"),
             ("main.py", b"import os\r\nimport bilp\r\nx = 1\r\nx = bilp.f(x)\r\nprint(x)\r\n", "more hooks")]
    for name, data, msg in edits:
        (up / name).write_bytes(data)
        git(up, "commit", "-qam", msg)
    patches = tmp_path / "project" / "patches" / "toy"
    git(up, "format-patch", "-q", pinned, "--zero-commit", "--no-signature", "-o", str(patches))
    git(up, "checkout", "-q", "--detach", pinned), git(up, "branch", "-qD", "work")
    adapter = tmp_path / "project" / "adapters" / "toy"
    adapter.mkdir(parents=True)
    names = ", ".join(f'"{p.name}"' for p in sorted(patches.iterdir()))
    (adapter / "manifest.toml").write_text(
        f'name = "toy"\nupstream = "https://example.org/toy"\npath = "third_party/toy"\ncommit = "{pinned}"\n'
        f'patches = [{names}]\nscripts = ["main.py"]\n')
    return apply.Manifest.load(adapter)


def test_apply_then_revert_round_trips_bytes(project: apply.Manifest) -> None:
    before = snapshot(project.checkout)
    assert "applied 3 patch(es)" in apply.apply(project)
    patched = (project.checkout / "main.py").read_bytes()
    assert patched == b"import os\r\nimport bilp\r\nx = 1\r\nx = bilp.f(x)\r\nprint(x)\r\n"  # CRLF kept
    assert b"reshape" in (project.checkout / "utils.py").read_bytes()
    assert "reverted" in apply.revert(project)
    assert snapshot(project.checkout) == before
    assert git(project.checkout, "status", "--porcelain") == ""


def test_second_apply_is_a_noop(project: apply.Manifest) -> None:
    apply.apply(project)
    after_first = snapshot(project.checkout)
    assert "already applied" in apply.apply(project)
    assert snapshot(project.checkout) == after_first
    apply.revert(project)
    assert "not patched" in apply.revert(project)


def test_check_changes_nothing(project: apply.Manifest) -> None:
    before = snapshot(project.checkout)
    assert "apply cleanly" in apply.apply(project, check=True)
    assert snapshot(project.checkout) == before


def test_refuses_a_dirty_checkout_with_the_fix(project: apply.Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    (project.checkout / "main.py").write_bytes(b"local edit\n")
    before = snapshot(project.checkout)
    assert apply_main([str(project.root / "adapters" / "toy")]) == 2
    err = capsys.readouterr().err
    assert "has local changes" in err and f"git -C {project.checkout} stash" in err
    assert snapshot(project.checkout) == before


def test_refuses_another_commit(project: apply.Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    git(project.checkout, "commit", "-q", "--allow-empty", "-m", "newer")
    assert apply_main([str(project.root / "adapters" / "toy")]) == 2
    assert f"checkout {project.commit}" in capsys.readouterr().err


def test_refuses_a_missing_submodule(project: apply.Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    shutil.rmtree(project.checkout)
    assert apply_main([str(project.root / "adapters" / "toy")]) == 2
    assert "git submodule update --init third_party/toy" in capsys.readouterr().err


def test_conflict_in_the_middle_leaves_everything_as_it_was(project: apply.Manifest) -> None:
    second = project.patch_files[1]
    second.write_bytes(second.read_bytes().replace(b"+import bilp", b"+import bilp_plugin").replace(
        b" x = 1", b" x = 2"))
    before = snapshot(project.checkout)
    expected = "(?s)0002-hooks.patch does not apply.*patch failed: main.py.*nothing was changed"
    with pytest.raises(apply.BiLPError, match=expected):
        apply.apply(project)
    assert snapshot(project.checkout) == before
    assert git(project.checkout, "status", "--porcelain") == ""


def test_upstream_clone_by_path(project: apply.Manifest, tmp_path: Path) -> None:
    clone = tmp_path / "my-clone"
    git(tmp_path, "clone", "-q", str(project.checkout), str(clone))
    git(clone, "checkout", "-q", project.commit)
    before = snapshot(project.checkout)
    assert apply_main([str(project.root / "adapters" / "toy"), "--upstream", str(clone)]) == 0
    assert b"bilp.f" in (clone / "main.py").read_bytes() and snapshot(project.checkout) == before
    assert apply.status_row(project, clone)["patched"] == "yes"
    assert apply_main([str(project.root / "adapters" / "toy"), "--upstream", str(clone), "--revert"]) == 0
    assert apply.status_row(project, clone)["patched"] == "no"


def test_status_table(project: apply.Manifest, capsys: pytest.CaptureFixture[str]) -> None:
    apply.apply(project)
    assert apply_main([str(project.root / "adapters" / "toy"), "--status"]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["adapter", "path", "commit", "pinned", "patched", "clean"]
    assert row.split() == ["toy", "third_party/toy", project.commit[:12], "yes", "yes", "yes"]


@pytest.mark.parametrize("name", IN_TREE)
def test_real_series_round_trip_a_clone_byte_for_byte(name: str, tmp_path: Path) -> None:
    from upstreams import clone

    manifest = apply.Manifest.load(ROOT / "adapters" / name)
    if not manifest.patches:
        pytest.skip(f"adapter {name} lists no patches yet")
    checkout = clone(name, tmp_path / name)
    before = snapshot(checkout)
    assert "applied" in apply.apply(manifest, checkout)
    assert snapshot(checkout) != before and apply.status_row(manifest, checkout)["patched"] == "yes"
    assert "already applied" in apply.apply(manifest, checkout)
    assert "reverted" in apply.revert(manifest, checkout)
    assert snapshot(checkout) == before


@pytest.mark.parametrize("name", IN_TREE)
def test_real_series_apply_to_their_pinned_commits(name: str) -> None:
    manifest = apply.Manifest.load(ROOT / "adapters" / name)
    if not (manifest.checkout / ".git").exists():
        pytest.skip(f"submodule {manifest.path} is not initialised: `git submodule update --init {manifest.path}`")
    if not manifest.patches:
        pytest.skip(f"adapter {name} lists no patches yet")
    message = apply.apply(manifest, check=True)
    assert "apply cleanly" in message or "already applied" in message


def test_a_name_patches_the_project_around_the_working_folder(project: apply.Manifest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``bilp-apply toy`` from inside the upstream's own folder finds the project's manifest above it."""
    before = snapshot(project.checkout)
    monkeypatch.chdir(project.checkout)
    assert apply.find_manifest("adapters/toy").root == project.root  # the folder form, not found from here, too
    assert apply_main(["toy"]) == 0
    assert b"bilp.f" in (project.checkout / "main.py").read_bytes()
    monkeypatch.chdir(project.root / "adapters")
    assert apply_main(["toy", "--revert"]) == 0
    assert snapshot(project.checkout) == before


def test_a_name_from_outside_any_project_is_the_installed_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    manifest = apply.Manifest.load(ROOT / "adapters" / "dc")
    if not (manifest.checkout / ".git").exists():
        pytest.skip(f"submodule {manifest.path} is not initialised: `git submodule update --init {manifest.path}`")
    monkeypatch.chdir(tmp_path)
    assert apply.find_manifest("dc").root == ROOT and apply.find_manifest("adapters/dc").root == ROOT
    assert apply_main(["dc", "--check"]) == 0
    assert str(manifest.checkout) in capsys.readouterr().out
    monkeypatch.chdir(manifest.checkout)
    assert apply.find_manifest("dc").root == ROOT
    with pytest.raises(apply.BiLPError, match="neither an adapter folder .* nor an adapter name: use one of"):
        apply.find_manifest("nope")
