"""``bilp-apply``: apply an adapter's patch series to its upstream checkout, all or nothing.

The series is first applied to a temporary index built from the pinned commit, which yields the patched tree
without touching the checkout; only when every patch applies is the checkout moved from the pinned tree to the
patched tree in one ``git read-tree -m -u``. The checkout's state is read from its content, never from a marker:
``pristine`` (the pinned commit's files), ``patched`` (the patched tree's files) or ``dirty`` (anything else).

One ``bilp-apply`` at a time changes a checkout (a lock on its git folder, released when the process ends); a
second one, a stale ``index.lock`` or any other git failure ends with one line saying what to run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path

import git
import gitdb

from bilp_plugin import files
from bilp_plugin.errors import BiLPError
from bilp_plugin.manager import adapter_entry_points

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECORD = "bilp-applied.json"


@dataclass(frozen=True)
class Manifest:
    """``adapters/<name>/manifest.toml``: where the upstream lives, its pinned commit and its patch series."""

    name: str
    upstream: str
    path: str
    commit: str
    patches: tuple[str, ...]
    scripts: tuple[str, ...]
    root: Path

    @classmethod
    def load(cls, adapter_dir: str | Path) -> Manifest:
        adapter_dir = Path(adapter_dir).resolve()
        file = adapter_dir / "manifest.toml"
        if not file.is_file():
            raise BiLPError(f"{adapter_dir} has no manifest.toml: pass an adapter folder such as adapters/dc")
        try:
            data = tomllib.loads(file.read_text())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            raise BiLPError(f"{file} is not valid TOML ({err}): restore it with `git checkout -- {file}`") from None
        for key, kind in (("name", str), ("upstream", str), ("path", str), ("commit", str), ("patches", list)):
            if key not in data:
                raise BiLPError(f"{file} lacks the key {key!r}")
            if not isinstance(data[key], kind) or kind is list and not all(isinstance(x, str) for x in data[key]):
                raise BiLPError(f"{file}: {key} must be a {'list of strings' if kind is list else 'string'}, got "
                                f"{data[key]!r}")
        return cls(name=data["name"], upstream=data["upstream"], path=data["path"], commit=data["commit"],
                   patches=tuple(data["patches"]), scripts=tuple(map(str, data.get("scripts", ()))),
                   root=adapter_dir.parent.parent)

    @property
    def patch_files(self) -> list[Path]:
        return [self.root / "patches" / self.name / p for p in self.patches]

    @property
    def checkout(self) -> Path:
        return self.root / self.path


def _repo(manifest: Manifest, upstream: str | Path | None) -> git.Repo:
    path = Path(upstream) if upstream else manifest.checkout
    fix = (f"git clone {manifest.upstream} {path}" if upstream
           else f"git submodule update --init {manifest.path}")
    if not (path / ".git").exists():
        raise BiLPError(f"{path} is not an initialised checkout of {manifest.upstream}: run `{fix}`")
    try:
        return git.Repo(path)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise BiLPError(f"{path} is not a git checkout: run `{fix}`") from None


def _check_commit(repo: git.Repo, manifest: Manifest) -> None:
    head = repo.head.commit.hexsha if repo.head.is_valid() else "no commit"
    if head == manifest.commit:
        return
    try:
        repo.commit(manifest.commit)
    except (ValueError, gitdb.exc.BadName, gitdb.exc.BadObject):
        raise BiLPError(f"{repo.working_dir} lacks the pinned commit {manifest.commit[:12]}: it is not a clone of "
                        f"{manifest.upstream}, or an outdated one: run `git -C {repo.working_dir} fetch "
                        f"{manifest.upstream}`, or clone it afresh") from None
    raise BiLPError(f"{repo.working_dir} is at {head[:12]}, not the pinned commit {manifest.commit[:12]}: "
                    f"run `git -C {repo.working_dir} checkout {manifest.commit}`")


def _git_failure(repo: git.Repo, err: git.GitCommandError) -> BiLPError:
    """One line for a git command that failed under bilp-apply."""
    if "index.lock" in str(err.stderr):
        return _index_locked(repo)
    first = next((line for line in _stderr(err).splitlines() if line.strip()), f"exit status {err.status}")
    return BiLPError(f"git failed in {repo.working_dir} ({first}): run `bilp-apply --status` to see its state")


def _index_locked(repo: git.Repo) -> BiLPError:
    lock = Path(repo.git_dir) / "index.lock"
    return BiLPError(f"{lock} exists: another git command runs in {repo.working_dir}, or one was killed; wait for "
                     f"it, or remove the stale lock with `rm {lock}`, then run bilp-apply again")


@contextlib.contextmanager
def _exclusive(repo: git.Repo) -> Iterator[None]:
    """This process alone changes ``repo`` (a lock on its git folder, released at exit however the process
    ends); git failures become one line."""
    fd = os.open(repo.git_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BiLPError(f"another bilp-apply is changing {repo.working_dir}: wait for it to finish, then run "
                            "`bilp-apply --status`") from None
        if (Path(repo.git_dir) / "index.lock").exists():  # refused before any object is written
            raise _index_locked(repo)
        try:
            yield
        except git.GitCommandError as err:
            raise _git_failure(repo, err) from None
    finally:
        os.close(fd)


def patched_tree(repo: git.Repo, manifest: Manifest, upto: int | None = None) -> str:
    """The tree id of the pinned commit with the series (or its first ``upto`` patches) applied, built in a
    temporary index."""
    patches = manifest.patch_files[:upto]
    for patch in patches:
        if not patch.is_file():
            raise BiLPError(f"patch {patch} listed in {manifest.name}'s manifest does not exist")
    with files.scratch(Path(repo.git_dir) / "bilp-index") as index:
        env = {"GIT_INDEX_FILE": str(index)}
        repo.git.read_tree(manifest.commit, env=env)
        for patch in patches:
            try:
                repo.git.apply("--cached", "--whitespace=nowarn", str(patch), env=env)
            except git.GitCommandError as err:
                raise BiLPError(f"{patch.name} does not apply to {manifest.commit[:12]} in "
                                f"{repo.working_dir}:\n{_stderr(err)}\nnothing was changed") from None
        return str(repo.git.write_tree(env=env))


def _stderr(err: git.GitCommandError) -> str:
    """git's own message, without GitPython's ``stderr: '...'`` wrapping."""
    return str(err.stderr).strip().removeprefix("stderr:").strip().strip("'").strip()


def _same_as(repo: git.Repo, tree: str) -> bool:
    """Whether the working tree's tracked files equal ``tree`` byte for byte."""
    repo.git.update_index("-q", "--refresh", with_exceptions=False)
    return repo.git.diff(tree, "--quiet", with_exceptions=False, with_extended_output=True)[0] == 0


def state(repo: git.Repo, manifest: Manifest, tree: str) -> str:
    """``pristine``, ``patched`` or ``dirty`` (see the module docstring)."""
    staged = repo.git.diff("--cached", "--quiet", with_exceptions=False, with_extended_output=True)[0] != 0
    if not staged and _same_as(repo, "HEAD"):
        return "pristine"
    return "patched" if _same_as(repo, tree) else "dirty"


def _dirty(repo: git.Repo) -> BiLPError:
    return BiLPError(f"{repo.working_dir} has local changes (neither the pinned files nor the patched ones): "
                     f"keep them with `git -C {repo.working_dir} stash`, or drop them with "
                     f"`git -C {repo.working_dir} reset --hard`, then run bilp-apply again")


def _checked(repo: git.Repo, manifest: Manifest) -> tuple[str, str]:
    """The patched tree and the checkout's state; refuses a checkout at another commit."""
    _check_commit(repo, manifest)
    tree = patched_tree(repo, manifest)
    return tree, state(repo, manifest, tree)


def apply(manifest: Manifest, upstream: str | Path | None = None, check: bool = False) -> str:
    """Apply the series (or, with ``check``, only prove that it applies). Returns a one-line message."""
    with _repo(manifest, upstream) as repo, _exclusive(repo):
        tree, current = _checked(repo, manifest)
        if current == "patched":
            return f"{manifest.name}: already applied to {repo.working_dir}; nothing changed"
        if current == "dirty":
            raise _dirty(repo)
        if check:
            return f"{manifest.name}: {len(manifest.patches)} patch(es) apply cleanly to {repo.working_dir}"
        repo.git.read_tree("-m", "-u", "HEAD", tree)
        _write_record(repo, manifest, tree)
        return f"{manifest.name}: applied {len(manifest.patches)} patch(es) to {repo.working_dir}"


def revert(manifest: Manifest, upstream: str | Path | None = None) -> str:
    """Return the checkout to the pinned commit's files, byte for byte."""
    with _repo(manifest, upstream) as repo, _exclusive(repo):
        _, current = _checked(repo, manifest)
        if current == "pristine":
            return f"{manifest.name}: {repo.working_dir} is not patched; nothing changed"
        if current == "dirty":
            raise _dirty(repo)
        repo.git.read_tree("--reset", "-u", "HEAD")
        record = Path(repo.git_dir) / RECORD
        if record.exists():
            record.unlink()
        return f"{manifest.name}: reverted {repo.working_dir} to {manifest.commit[:12]}"


def _write_record(repo: git.Repo, manifest: Manifest, tree: str) -> None:
    """What was applied, kept in the checkout's git folder (outside its working tree)."""
    patches = [{"file": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
               for p in manifest.patch_files]
    files.write_json(Path(repo.git_dir) / RECORD,
                     {"adapter": manifest.name, "commit": manifest.commit, "tree": tree, "patches": patches,
                      "applied": datetime.now().astimezone().isoformat(timespec="seconds")})


def status_row(manifest: Manifest, upstream: str | Path | None = None) -> dict[str, str]:
    """One row of ``bilp-apply --status``."""
    row = {"adapter": manifest.name, "path": str(upstream or manifest.path), "commit": "-", "pinned": "-",
           "patched": "-", "clean": "-"}
    try:
        repo = _repo(manifest, upstream)
    except BiLPError:
        if upstream:  # the path the user named: say what it is
            raise
        row["commit"] = "not initialised"
        return row
    with repo:
        if not repo.head.is_valid():
            if upstream:
                raise BiLPError(f"--upstream {upstream} has no commit (an empty git repository): clone "
                                f"{manifest.upstream} there, or name your clone of it")
            row["commit"] = "no commit"
            return row
        head = repo.head.commit.hexsha
        row.update(commit=head[:12], pinned="yes" if head == manifest.commit else "no")
        if head != manifest.commit:
            return row
        try:
            current = state(repo, manifest, patched_tree(repo, manifest))
        except (BiLPError, git.GitCommandError):
            current = "dirty"
    row.update(patched="yes" if current == "patched" else "no", clean="no" if current == "dirty" else "yes")
    return row


def adapter_folder(name: str) -> Path | None:
    """The folder of the installed adapter ``name`` (where its ``bilp.adapters`` module lives), or ``None``."""
    module = adapter_entry_points().get(name)
    spec = importlib.util.find_spec(module) if module else None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def manifests() -> list[Manifest]:
    """The manifest of every installed adapter that has one (the built-in host's has none), by name."""
    folders = [adapter_folder(name) for name in adapter_entry_points()]
    return [Manifest.load(d) for d in folders if d is not None and (d / "manifest.toml").is_file()]


def project_adapter(name: str, start: Path | None = None) -> Path | None:
    """``adapters/<name>`` of the project around ``start`` (the working folder): in it or in a parent folder."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "adapters" / name / "manifest.toml").is_file():
            return folder / "adapters" / name
    return None


def find_manifest(adapter: str) -> Manifest:
    """The manifest of ``adapter``: an adapter folder (``adapters/dc``), or an adapter's name (``dc``), from any
    working folder. A name (or a folder not found from here) is looked up in the project around the working folder
    first (so ``bilp-apply dc`` inside a checkout, even inside its ``third_party/DatasetCondensation``, patches
    that checkout), then among the installed adapters (from anywhere else)."""
    path = Path(adapter)
    if (path / "manifest.toml").is_file():
        return Manifest.load(path)
    folder = project_adapter(path.name)
    if folder is None:
        folder = adapter_folder(path.name)
    if folder is not None and (folder / "manifest.toml").is_file():
        return Manifest.load(folder)
    names = ", ".join(m.name for m in manifests())
    raise BiLPError(f"{adapter} is neither an adapter folder with a manifest.toml nor an adapter name: use one of "
                    f"{names} (or their folders, e.g. adapters/dc)")


def export_patched(manifest: Manifest, dest: str | Path, upto: int | None = None) -> Path:
    """The upstream's files at the pinned commit with its series (or the first ``upto`` patches) applied, written
    under ``dest``: a patched copy for tests, benchmarks and demos, the submodule itself left untouched."""
    with _repo(manifest, None) as repo:
        _check_commit(repo, manifest)
        return export_tree(repo, patched_tree(repo, manifest, upto), dest)


def export_tree(repo: git.Repo, tree: str, dest: str | Path) -> Path:
    """Write the files of ``tree`` under ``dest`` (blobs a partial mirror lacks are skipped)."""
    dest = Path(dest)
    for entry in repo.git.ls_tree("-r", "-z", tree).split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind != "blob":
            continue
        try:
            data = repo.odb.stream(bytes.fromhex(sha)).read()
        except (ValueError, gitdb.exc.BadObject):
            continue
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        target.chmod(int(mode, 8) & 0o777)
    return dest
