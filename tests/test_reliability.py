"""Nothing of a user's is ever lost: foreign folders, concurrent runs, links, names and full disks, damaged records
and sweep points, environments that do not fit, tried as a hostile user would.

The table (:data:`CASES`) is in the style of ``test_bad_inputs.py``: each case ends with exit status 2 and exactly
one ``error:`` line naming the value, and leaves every file as it was. Then real races (two processes started on
one folder: one is refused naming the other's pid, and nothing of the other's is lost), ``kill -9`` at every write
of a report and of a sweep point (the rerun completes, nothing partial under a final name), and a full and a
read-only disk (a small tmpfs, where this process may mount one).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_exit import exit_status
from test_bad_inputs import (HOST, SCORE, SWEEP, good_scores, killed_at, one_error_line, other_repo, record,
                             snapshot)

from bilp_plugin import cli

LONG = "n" * 300
"""A name longer than any file system takes (255 bytes)."""
RT = ["--bilp", "--bilp-alpha", "0.5", "--bilp-criterion", "random", "--bilp-out"]
"""A patched upstream's BiLP flags (level 1 at random), then the record folder."""
ABLATE = ["ablate", *HOST[:-1], "--alpha", "0.5", "--beta", "0.2"]
DEMO = ["demo", *HOST]
REPORT = ["report", "run", "--out", "rep"]


def toy_upstream(argv: list[str]) -> int:
    """A patched upstream's BiLP calls on 60 samples of 3 classes, in this process (exit status 2 comes as
    ``SystemExit``, as from the upstream's own process)."""
    from argparse import ArgumentParser

    import torch

    from bilp_plugin import runtime

    parser = ArgumentParser(prog="toy.py")
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--init", default="real")
    runtime.add_arguments(parser)
    args = parser.parse_args(argv)
    labels = torch.arange(60) % 3
    indices_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(3)]
    runtime.prune_real(args, indices_class, labels, upstream="builtin", dataset="toy")
    runtime.finish(args)
    return 0


TOY_UPSTREAM = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_reliability import toy_upstream
    raise SystemExit(toy_upstream({argv!r}))
""")


# --------------------------------------------------------------------------------------- a folder held by another
HOLDERS: list[subprocess.Popen[str]] = []


def held(folder: Path, flag: str = "--out") -> dict[str, int]:
    """Another process holds ``folder`` (``bilp_plugin.files.hold``) until the case ends; its pid."""
    code = (f"import time; from pathlib import Path; from bilp_plugin import files\n"
            f"lock = files.hold(Path({str(folder)!r}), {flag!r})\nprint('held', flush=True)\ntime.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    HOLDERS.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n", proc.stderr and proc.stderr.read()
    return {"pid": proc.pid}


def link(at: Path, target: str) -> None:
    at.symlink_to(target)


def demo_folder(here: Path) -> Path:
    (here / "dm").mkdir()
    (here / "dm" / "demo.json").write_text("{}")
    return here / "dm"


def earlier_report(here: Path) -> None:
    record(here / "run")
    assert cli.main(REPORT) == 0


def run_with_scores(here: Path, **scores: object) -> Path:
    """A run record with a score file of 4 samples in it (the record says n = 6)."""
    from bilp_plugin.method import scorefile

    run = record(here / "run", **{k: v for k, v in scores.items() if k != "n"})
    labels = np.array([0, 1, 0, 1])
    scorefile.save(run / "scores.npz",
                   scorefile.ScoreFile(np.linspace(0, 1, 4), labels, scorefile.dataset_meta("toy", labels)))
    (run / "level1.json").write_text(json.dumps({"kept": 3, "n": scores.get("n", 6), "criterion": "loss"}))
    (run / "config.json").write_text(json.dumps({"bilp": {"criterion": "loss", "alpha": 0.5, "beta": 0.2},
                                                 "upstream": "builtin", "upstream_args": {}}))
    return run


def image_folders(here: Path, labels: np.ndarray) -> None:
    """Two image folders of the same class counts, other files; ``s.npz`` scored on the first."""
    from bilp_plugin.method import scorefile

    for top, names in (("a", ("x", "y")), ("b", ("p", "q"))):
        for cls in ("cat", "dog"):
            (here / top / cls).mkdir(parents=True)
            for name in names:
                (here / top / cls / f"{name}.png").write_bytes(b"")
    files = [f"{cls}/{name}.png" for cls in ("cat", "dog") for name in ("x", "y")]
    y = np.array([0, 0, 1, 1])
    scorefile.save(here / "s.npz", scorefile.ScoreFile(np.linspace(0, 1, 4), y,
                                                       scorefile.dataset_meta("imagefolder", y, files)))


def parsed_by(upstream: str, script: str, **own: object) -> Callable[[list[str]], int]:
    """A patched ``script`` of ``upstream`` parsing its command line (its own arguments ``own`` as defaults, the
    BiLP flags added with the upstream's name, as its hook patch adds them); exit status 0 when it parses."""
    def main(argv: list[str]) -> int:
        from argparse import ArgumentParser

        from bilp_plugin import runtime

        parser = ArgumentParser(prog=script)
        for name, value in own.items():
            parser.add_argument(f"--{name}", default=value)
        runtime.add_arguments(parser, upstream=upstream, level2=upstream != "mtt")
        argv0 = sys.argv[0]
        sys.argv[0] = script
        try:
            parser.parse_args(argv)
        finally:
            sys.argv[0] = argv0
        return 0
    return main


MTT_BUFFER = parsed_by("mtt", "buffer.py", num_experts=1, buffer_path="buffers", dataset="CIFAR10", model="ConvNet",
                       zca=False)
DC_MAIN = parsed_by("dc", "main.py", method="DC", model="ConvNet", dis_metric="nope", batch_real=256, init="real",
                    ipc=1)


def damaged(file: str, **change: object) -> Callable[[Path, np.ndarray], object]:
    """A run record whose ``file`` (a JSON object; ``level2.jsonl``: its first line) has ``change`` merged in."""
    def setup(here: Path, labels: np.ndarray) -> None:
        run = record(here / "run")
        if file == "level2.jsonl":
            rows = [json.loads(line) for line in (run / file).read_text().splitlines()]
            rows[0].update(change)
            (run / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
            return
        value = json.loads((run / file).read_text())
        for key, item in change.items():
            if key == "bilp":
                value["bilp"].update(item)
            else:
                value[key] = item
        (run / file).write_text(json.dumps(value))
    return setup


# ------------------------------------------------------------------------------------------ stored sweep points
@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-point sweep (``SWEEP --out sw``) to copy."""
    top = tmp_path_factory.mktemp("sweep")
    cwd = os.getcwd()
    os.chdir(top)
    try:
        assert cli.main([*SWEEP, "--out", "sw"]) == 0
    finally:
        os.chdir(cwd)
    return top / "sw"


SWEPT: list[Path] = []


def swept_point(name: str = "baseline-s0", **change: object) -> Callable[[Path, np.ndarray], object]:
    """The finished sweep in ``sw``, its stored point ``name`` with ``change`` merged in (``result``: merged into
    its result)."""
    def setup(here: Path, labels: np.ndarray) -> None:
        shutil.copytree(SWEPT[0], here / "sw", symlinks=True)
        file = here / "sw" / "points" / f"{name}.json"
        entry = json.loads(file.read_text())
        for key, item in change.items():
            if key == "result":
                entry["result"].update(item)
            else:
                entry[key] = item
        file.write_text(json.dumps(entry))
    return setup


# -------------------------------------------------------------------------------------------------- the table
@dataclass
class Case:
    """``argv`` of ``command`` (``bilp``, ``bilp-apply`` or ``toy``: :func:`toy_upstream`), run in a fresh folder
    prepared by ``setup``; refused with one line holding ``message`` (formatted with what ``setup`` returns)."""

    name: str
    command: str
    argv: list[str]
    message: str
    setup: Callable[[Path, np.ndarray], object] = lambda here, labels: None
    env: dict[str, str] = field(default_factory=dict)
    sweep: bool = False


def _b(name: str, argv: list[str], message: str, setup: Callable[[Path, np.ndarray], object] = lambda h, y: None,
       **env: str) -> Case:
    return Case(name, "bilp", argv, message, setup, env)


def _t(name: str, out: str, message: str, setup: Callable[[Path, np.ndarray], object] = lambda h, y: None) -> Case:
    return Case(name, "toy", [*RT, out], message, setup)


def _s(name: str, message: str, setup: Callable[[Path, np.ndarray], object]) -> Case:
    return Case(name, "bilp", [*SWEEP, "--out", "sw"], message, setup, sweep=True)


CASES: list[Case] = [
    # 1. ownership of output folders
    _t("record-into-a-folder-of-the-users-level2", "rec", "holds files that are not a run record",
       lambda h, y: ((h / "rec").mkdir(), (h / "rec" / "level2.jsonl").write_text("mine\n"),
                     (h / "rec" / "summary.json").write_text('{"mine": 1}'))),
    _t("record-into-a-folder-of-notes", "rec", "holds files that are not a run record",
       lambda h, y: ((h / "rec").mkdir(), (h / "rec" / "notes.txt").write_text("mine"))),
    _t("record-into-a-finished-record", "rec", "already holds a run record",
       lambda h, y: record(h / "rec")),
    _b("sweep-into-a-folder-of-the-users", [*SWEEP, "--out", "sw"], "is not a sweep folder",
       lambda h, y: ((h / "sw").mkdir(), (h / "sw" / "mine.txt").write_text("x"))),
    _b("sweep-into-a-demo-folder", [*SWEEP, "--out", "dm"], "is not a sweep folder", lambda h, y: demo_folder(h)),
    _b("sweep-into-a-run-record", [*SWEEP, "--out", "run"], "is not a sweep folder", lambda h, y: record(h / "run")),
    _b("ablate-into-a-folder-of-the-users", [*ABLATE, "--out", "ab"], "is not an ablate folder",
       lambda h, y: ((h / "ab").mkdir(), (h / "ab" / "mine.txt").write_text("x"))),
    _b("ablate-into-a-sweep-folder", [*ABLATE, "--out", "sw"], "is not an ablate folder",
       lambda h, y: ((h / "sw").mkdir(), (h / "sw" / "sweep.json").write_text("{}"))),
    # 2. exclusive use
    _b("sweep-folder-in-use", [*SWEEP, "--out", "sw"], "in use by process {pid}", lambda h, y: held(h / "sw")),
    _b("ablate-folder-in-use", [*ABLATE, "--out", "ab"], "in use by process {pid}", lambda h, y: held(h / "ab")),
    _b("demo-folder-in-use", [*DEMO, "--out", "dm", "--force"], "in use by process {pid}",
       lambda h, y: held(demo_folder(h))),
    _b("report-folder-in-use", REPORT, "in use by process {pid}",
       lambda h, y: (earlier_report(h), held(h / "rep"))[1]),
    _t("record-in-use", "rec", "in use by process {pid}", lambda h, y: held(h / "rec", "--bilp-out")),
    _s("sweep-point-in-use", "in use by process {pid}",
       lambda h, y: (swept_point()(h, y), (h / "sw" / "points" / "baseline-s0.json").unlink(),
                     held(h / "sw" / "runs" / "baseline-s0", "--bilp-out"))[2]),
    # 3. OS errors: links, names the file system refuses
    _b("score-out-below-a-dangling-link", [*SCORE[:-1], "gone/s.npz"], "gone is a dangling link",
       lambda h, y: link(h / "gone", "nowhere/at/all")),
    _b("score-out-below-a-looping-link", [*SCORE[:-1], "loop/s.npz"], "loop is a looping link",
       lambda h, y: link(h / "loop", "loop")),
    _b("score-out-is-a-dangling-link", SCORE, "s.npz is a dangling link", lambda h, y: link(h / "s.npz", "x/s.npz")),
    _b("score-out-name-too-long", [*SCORE[:-1], LONG + ".npz"], "File name too long"),
    _b("prune-out-is-a-looping-link", ["prune", "--alpha", "0.5", "--scores", "g.npz", "--out", "kept.npy"],
       "kept.npy is a looping link", lambda h, y: (good_scores(h / "g.npz", y), link(h / "kept.npy", "kept.npy"))),
    _b("prune-out-name-too-long", ["prune", "--alpha", "0.5", "--scores", "g.npz", "--out", LONG + ".npy"],
       "File name too long", lambda h, y: good_scores(h / "g.npz", y)),
    _b("prune-scores-looping-link", ["prune", "--alpha", "0.5", "--scores", "s.npz", "--out", "kept.npy"],
       "s.npz", lambda h, y: link(h / "s.npz", "s.npz")),
    _b("report-out-is-a-dangling-link", REPORT, "rep is a dangling link",
       lambda h, y: (record(h / "run"), link(h / "rep", "nowhere"))),
    _b("report-out-is-a-looping-link", REPORT, "rep is a looping link",
       lambda h, y: (record(h / "run"), link(h / "rep", "rep"))),
    _b("report-out-name-too-long", ["report", "run", "--out", LONG], "File name too long",
       lambda h, y: record(h / "run")),
    _b("report-of-a-looping-link", ["report", "loop", "--out", "rep"], "loop", lambda h, y: link(h / "loop", "loop")),
    _b("sweep-out-is-a-dangling-link", [*SWEEP, "--out", "sw"], "sw is a dangling link",
       lambda h, y: link(h / "sw", "nowhere")),
    _b("demo-out-is-a-looping-link", [*DEMO, "--out", "dm"], "dm is a looping link",
       lambda h, y: link(h / "dm", "dm")),
    _b("ablate-out-name-too-long", [*ABLATE, "--out", LONG], "File name too long"),
    _t("record-out-is-a-dangling-link", "rec", "rec is a dangling link", lambda h, y: link(h / "rec", "nowhere")),
    _t("record-out-is-a-looping-link", "rec", "rec is a looping link", lambda h, y: link(h / "rec", "rec")),
    _t("record-out-name-too-long", LONG, "File name too long"),
    _t("record-out-below-a-dangling-link", "gone/rec", "gone is a dangling link",
       lambda h, y: link(h / "gone", "nowhere")),
    # 4. records read defensively: bilp report
    _b("report-accuracy-nan", REPORT, "'accuracy' must be numbers in [0, 1]",
       damaged("result.json", accuracy=[math.nan])),
    _b("report-accuracy-57", REPORT, "'accuracy' must be numbers in [0, 1]", damaged("result.json", accuracy=[57.0])),
    _b("report-accuracy-negative", REPORT, "'accuracy' must be numbers in [0, 1]",
       damaged("result.json", accuracy=[0.5, -0.1])),
    _b("report-alpha-1.5", REPORT, "'alpha' must be in [0, 1)", damaged("config.json", bilp={"alpha": 1.5})),
    _b("report-alpha-infinite", REPORT, "'alpha' must be in [0, 1)", damaged("config.json", bilp={"alpha": math.inf})),
    _b("report-beta-negative", REPORT, "'beta' must be in [0, 1)", damaged("config.json", bilp={"beta": -0.2})),
    _b("report-stratum-0", REPORT, "'stratum' must be in 1..10",
       damaged("config.json", bilp={"criterion": "stratum", "stratum": 0})),
    _b("report-criterion-unknown", REPORT, "'criterion' must be one of",
       damaged("config.json", bilp={"criterion": "<b>evil</b>"})),
    _b("report-level1-kept-above-n", REPORT, "'kept' must be in 0..'n'", damaged("level1.json", kept=9, n=6)),
    _b("report-level1-n-negative", REPORT, "'n' must be >= 0", damaged("level1.json", n=-6)),
    _b("report-level2-mu-nan", REPORT, "'mu' must be finite", damaged("level2.jsonl", mu=math.nan)),
    _b("report-level2-sigma-negative", REPORT, "'sigma' must be finite and >= 0", damaged("level2.jsonl", sigma=-1.0)),
    _b("report-level2-iteration-negative", REPORT, "'iteration' must be >= 0", damaged("level2.jsonl", iteration=-3)),
    _b("report-level2-low-above-high", REPORT, "'low' above 'high'", damaged("level2.jsonl", low=5.0, high=1.0)),
    _b("report-summary-share-nan", REPORT, "'ite_share' must be finite and >= 0",
       damaged("summary.json", ite_share=math.nan)),
    _b("report-summary-ite-infinite", REPORT, "'ite_s' must be finite and >= 0",
       damaged("summary.json", ite_s=math.inf)),
    _b("report-summary-selections-negative", REPORT, "'selections' must be >= 0",
       damaged("summary.json", selections=-1)),
    _b("report-kept-beyond-the-score-file", REPORT, "beyond its 4 scores", lambda h, y: run_with_scores(h)),
    # 4. records read defensively: stored sweep points
    _s("sweep-point-accuracy-nan", "baseline-s0.json is damaged", swept_point(result={"accuracy": [math.nan]})),
    _s("sweep-point-accuracy-57", "baseline-s0.json is damaged", swept_point(result={"accuracy": [57.0]})),
    _s("sweep-point-accuracy-missing", "baseline-s0.json is damaged", swept_point(result={"accuracy": None})),
    _s("sweep-point-seconds-negative", "baseline-s0.json is damaged", swept_point(seconds=-5.0)),
    _s("sweep-point-of-another-point", "baseline-s0.json is damaged",
       swept_point(point={"name": "loss-a0.5-s0", "alpha": 0.5, "seed": 0})),
    _s("sweep-point-record-strings", "baseline-s0.json is damaged", swept_point(record={"rows": "many"})),
    # 5. checks before work: adapters' refusals as the script parses, a score file bound to an image folder's files
    Case("mtt-buffer-level2-as-it-parses", "mtt-buffer", ["--bilp", "--bilp-beta", "0.2"],
         "--bilp-beta must be 0 for MTT"),
    Case("dc-main-metric-as-it-parses", "dc-main", ["--bilp", "--bilp-beta", "0.2"], "supports --dis_metric"),
    _b("prune-image-folder-of-other-files", ["prune", "--alpha", "0.5", "--scores", "s.npz", "--dataset",
                                             "imagefolder", "--data-root", "b", "--out", "kept.npy"],
       "was made on other files", image_folders),
    # 5. checks before work: bilp-apply --status
    Case("apply-status-of-an-empty-repo", "bilp-apply", ["dc", "--status", "--upstream", "empty"], "has no commit",
         lambda h, y: subprocess.run(["git", "init", "-q", str(h / "empty")], check=True)),
    Case("apply-status-of-an-empty-repo-for-every-adapter", "bilp-apply", ["--status", "--upstream", "empty"],
         "--upstream is one upstream's clone: name its adapter",
         lambda h, y: subprocess.run(["git", "init", "-q", str(h / "empty")], check=True)),
    Case("apply-to-an-empty-repo", "bilp-apply", ["dc", "--upstream", "empty"], "lacks the pinned commit",
         lambda h, y: subprocess.run(["git", "init", "-q", str(h / "empty")], check=True)),
    Case("apply-status-of-another-repo", "bilp-apply", ["--status", "--upstream", "other"],
         "--upstream is one upstream's clone: name its adapter", lambda h, y: other_repo(h / "other")),
]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    while HOLDERS:
        proc = HOLDERS.pop()
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def digits_labels() -> np.ndarray:
    from bilp_plugin.lab.datasets import load_dataset

    return load_dataset("digits").labels.numpy()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_in_one_line_and_nothing_changes(case: Case, here: Path, digits_labels: np.ndarray,
                                                 request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    if case.sweep and not SWEPT:
        SWEPT.append(request.getfixturevalue("finished_sweep"))
    values = case.setup(here, digits_labels)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    before = snapshot(here)
    capsys.readouterr()
    main = {"bilp": cli.main, "bilp-apply": cli.apply_main, "toy": toy_upstream, "mtt-buffer": MTT_BUFFER,
            "dc-main": DC_MAIN}[case.command]
    status = exit_status(main, case.argv)
    err = capsys.readouterr().err
    assert status == 2, err
    one_error_line(err, case.message.format(**(values if isinstance(values, dict) else {})))
    assert snapshot(here) == before


# ---------------------------------------------------------------------- 5. the distributed environment, checked
DISTRIBUTED: dict[str, tuple[dict[str, str], str]] = {
    "rank-equal-to-world-size": ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 must be below WORLD_SIZE=2"),
    "rank-missing": ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 needs RANK"),
    "rank-without-world-size": ({"RANK": "1"}, "RANK=1 without WORLD_SIZE"),
    "world-size-0": ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not a count >= 1"),
    "master-port-abc": ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "abc"},
                        "MASTER_PORT='abc' is not a port"),
    "master-port-70000": ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "70000"},
                          "MASTER_PORT='70000' is not a port"),
    "master-addr-empty": ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "", "MASTER_PORT": "29500"},
                          "MASTER_ADDR is empty"),
    "local-rank-abc": ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500",
                        "LOCAL_RANK": "abc"}, "LOCAL_RANK='abc' is not a count"),
}


@pytest.mark.parametrize("name", DISTRIBUTED)
def test_distributed_environment_is_refused_before_any_process_group(name: str, here: Path) -> None:
    """In a process of its own, with a time limit: a process group that cannot form waits forever."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(DISTRIBUTED[name][0])
    try:
        proc = subprocess.run([sys.executable, "-m", "bilp_plugin", *SCORE], cwd=here, env=env, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name}: still running after 120 s (waiting for a process group that cannot form)")
    assert proc.returncode == 2, proc.stderr[-2000:]
    one_error_line(proc.stderr, DISTRIBUTED[name][1])
    assert list(here.iterdir()) == []


# ------------------------------------------------------------------------------------------------- two processes
def blocked_at(here: Path, target: str, code: str) -> tuple[subprocess.Popen[str], Path]:
    """Start ``code`` in a fresh interpreter that stops at its first call of ``target`` (``module:function``)
    until the file ``go`` exists; returns once it has stopped there."""
    module, function = target.split(":")
    script = textwrap.dedent(f"""
        import os, time, importlib
        module = importlib.import_module({module!r})
        original = getattr(module, {function!r})
        def waiting(*args, **kwargs):
            if not os.path.exists({str(here / 'reached')!r}):
                open({str(here / 'reached')!r}, 'w').close()
                while not os.path.exists({str(here / 'go')!r}):
                    time.sleep(0.05)
            return original(*args, **kwargs)
        setattr(module, {function!r}, waiting)
    """) + textwrap.dedent(code)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=here, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (here / "reached").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the first process never got there"
        time.sleep(0.05)
    return proc, here / "go"


def command(argv: list[str]) -> str:
    return f"from bilp_plugin import cli\nraise SystemExit(cli.main({argv!r}))\n"


def race(here: Path, target: str, first: str, second: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """Start ``first`` and stop it at ``target``; run ``second`` (argv of python) to its end; let the first go on.
    Returns the second and the first's stderr (the first must succeed)."""
    proc, go = blocked_at(here, target, first)
    try:
        rival = subprocess.run([sys.executable, *second], cwd=here, capture_output=True, text=True, timeout=300)
    finally:
        go.touch()
        _, first_err = proc.communicate(timeout=300)
    assert proc.returncode == 0, first_err
    for name in ("reached", "go"):
        (here / name).unlink()
    one_error_line(rival.stderr, f"in use by process {proc.pid}")
    assert rival.returncode == 2
    return rival, first_err


def test_two_sweeps_on_one_folder(here: Path) -> None:
    """The second is refused while the first is between a point's run and its stored result (the state an
    interrupted point leaves): it neither deletes nor reruns the first's live point; the first completes."""
    argv = [*SWEEP, "--out", "sw"]
    race(here, "bilp_plugin.lab.resumable:record_totals", command(argv), ["-m", "bilp_plugin", *argv])
    points = sorted(p.name for p in (here / "sw" / "points").iterdir())
    assert points == ["baseline-s0.json", "loss-a0.5-s0.json"]
    for name in ("baseline-s0", "loss-a0.5-s0"):
        assert (here / "sw" / "runs" / name / "summary.json").is_file()
    assert json.loads((here / "sw" / "sweep-results.json").read_text())["seeds"] == [0]


def test_two_runs_on_one_record_folder(here: Path) -> None:
    """Two runs started on one ``--bilp-out``: the second, arriving while the first makes its level-1 choice
    (before its record exists), is refused before it writes anything; the first's record is whole and its own."""
    tests = str(Path(__file__).parent)
    code = TOY_UPSTREAM.format(tests=tests, argv=[*RT, "rec"])
    race(here, "bilp_plugin.method.level1:select", code, ["-c", code])
    config = json.loads((here / "rec" / "config.json").read_text())
    level1 = json.loads((here / "rec" / "level1.json").read_text())
    assert level1["kept"] == 30 and (here / "rec" / "summary.json").is_file()
    assert sorted(p.name for p in (here / "rec").iterdir() if p.name[0] != ".") == [
        "config.json", "kept_indices.npy", "level1.json", "summary.json"]
    assert config["process"]["pid"] != os.getpid()


def test_two_reports_into_one_folder(here: Path) -> None:
    record(here / "run")
    race(here, "bilp_plugin.lab.plots:_save", command(REPORT), ["-m", "bilp_plugin", *REPORT])
    assert (here / "rep" / "report.md").read_text().startswith("# BiLP report: 1 run(s)")


# ---------------------------------------------------------------------------------------------- kill -9, reruns
def visible(folder: Path) -> dict[str, str]:
    """The snapshot of ``folder`` without hidden names (temporary files and locks)."""
    return {k: v for k, v in snapshot(folder).items() if not any(part.startswith(".") for part in Path(k).parts)}


REPORT_WRITES = 4
"""The files one report of :func:`record` writes: three plots and ``report.md``."""


@pytest.mark.parametrize("write", range(REPORT_WRITES))
def test_report_killed_at_each_write_keeps_the_earlier_report(write: int, here: Path) -> None:
    """An earlier report in ``rep``; a new one (of two runs) killed at its ``write``-th file: ``rep`` still holds
    the earlier report, whole; the rerun writes the new one, whole, and leaves nothing else behind."""
    earlier_report(here)
    record(here / "run2")
    (here / "run2" / "config.json").write_text(json.dumps({"bilp": {"criterion": "random", "alpha": 0.3,
                                                                     "beta": 0.0}, "upstream": "builtin",
                                                           "upstream_args": {}}))
    before = visible(here / "rep")
    argv = ["report", "run", "run2", "--out", "rep"]
    killed = killed_at(here, "bilp_plugin.files:write_bytes", "", command(argv), after=write)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert visible(here / "rep") == before
    assert cli.main(argv) == 0
    assert (here / "rep" / "report.md").read_text().startswith("# BiLP report: 2 run(s)")
    assert sorted(os.listdir(here)) == ["rep", "run", "run2"]
    assert all(not name.endswith(".bilp-tmp") for name in os.listdir(here / "rep"))


def test_a_report_into_a_link_to_a_folder_keeps_the_link(here: Path) -> None:
    record(here / "run")
    (here / "real").mkdir()
    link(here / "rep", "real")
    for _ in range(2):
        assert cli.main(REPORT) == 0
    assert os.readlink(here / "rep") == "real" and (here / "real" / "report.md").is_file()
    assert sorted(os.listdir(here)) == ["real", "rep", "run"]


def test_report_killed_in_a_new_folder_reruns(here: Path) -> None:
    record(here / "run")
    killed = killed_at(here, "bilp_plugin.files:write_bytes", "", command(REPORT), after=1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (here / "rep").exists() or visible(here / "rep") == {}
    assert cli.main(REPORT) == 0
    assert sorted(os.listdir(here)) == ["rep", "run"]


POINT_WRITES = ("config.json", "kept_indices.npy", "level1.json", "summary.json", "result.json",
                "loss-a0.5-s0.json")
"""Every file the sweep's second point writes, in order."""


@pytest.mark.parametrize("name", POINT_WRITES)
def test_sweep_killed_at_each_write_of_a_point_resumes(name: str, here: Path) -> None:
    """Killed as the point ``loss-a0.5-s0`` writes ``name``: the finished baseline is kept as it was; the rerun
    runs the point again and completes, and no partial or temporary file remains."""
    argv = [*SWEEP, "--out", "sw"]
    trigger = "loss-a0.5-s0" if name == "loss-a0.5-s0.json" else f"loss-a0.5-s0/{name}"
    killed = killed_at(here, "bilp_plugin.files:replacing", trigger, command(argv))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    baseline = (here / "sw" / "points" / "baseline-s0.json").read_bytes()
    assert not (here / "sw" / "points" / "loss-a0.5-s0.json").exists()
    rerun = subprocess.run([sys.executable, "-c", command(argv)], cwd=here, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert (here / "sw" / "points" / "baseline-s0.json").read_bytes() == baseline
    assert json.loads((here / "sw" / "points" / "loss-a0.5-s0.json").read_text())["result"]["accuracy"]
    leftovers = [p for p in (here / "sw").rglob("*") if p.name.endswith(".bilp-tmp")]
    assert leftovers == []


# ---------------------------------------------------------------------------------------- full and read-only disks
@pytest.fixture
def disk(here: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs at ``here/disk``, filled to the last byte."""
    mount = here / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or 'mount failed'}): the full-disk "
                    "cases need root and a system that lets it mount")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


FULL_DISK: dict[str, tuple[str, list[str]]] = {
    "score": ("bilp", [*SCORE[:-1], "disk/s.npz"]),
    "prune": ("bilp", ["prune", "--alpha", "0.5", "--scores", "g.npz", "--out", "disk/kept.npy"]),
    "report": ("bilp", ["report", "run", "--out", "disk/rep"]),
    "sweep": ("bilp", [*SWEEP, "--out", "disk/sw"]),
    "record": ("toy", [*RT, "disk/rec"]),
}


@pytest.mark.parametrize("name", FULL_DISK)
def test_full_disk_is_one_line_and_leaves_no_partial_output(name: str, here: Path, disk: Path,
                                                            digits_labels: np.ndarray,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    good_scores(here / "g.npz", digits_labels)
    record(here / "run")
    before = snapshot(disk)
    kind, argv = FULL_DISK[name]
    status = exit_status(toy_upstream if kind == "toy" else cli.main, argv)
    err = capsys.readouterr().err
    assert status == 2, err
    one_error_line(err, "No space left on device")
    assert snapshot(disk) == before


def test_read_only_disk_is_one_line(here: Path, disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record(here / "run")
    (disk / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    status = exit_status(cli.main, ["report", "run", "--out", "disk/rep"])
    assert status == 2
    one_error_line(capsys.readouterr().err, "read-only file system")
    assert list(disk.iterdir()) == []


PERMISSION: dict[str, tuple[str, list[str], str]] = {
    "score-into-a-locked-folder": ("bilp", [*SCORE[:-1], "ro/s.npz"], "permission denied"),
    "report-into-a-locked-folder": ("bilp", ["report", "run", "--out", "ro/rep"], "permission denied"),
    "sweep-into-a-locked-folder": ("bilp", [*SWEEP, "--out", "ro/sw"], "permission denied"),
    "record-into-a-locked-folder": ("toy", [*RT, "ro/rec"], "permission denied"),
    "prune-an-unreadable-score-file": ("bilp", ["prune", "--alpha", "0.5", "--scores", "ro/g.npz", "--out",
                                                "kept.npy"], "g.npz"),
}


def writes_into_locked_folders() -> bool:
    """Whether this process writes into a folder of mode 555 anyway (root with its usual capabilities)."""
    import tempfile

    with tempfile.TemporaryDirectory() as top:
        os.chmod(top, 0o555)
        try:
            Path(top, "x").write_text("x")
        except PermissionError:
            return False
        finally:
            os.chmod(top, 0o755)
    return True


@pytest.mark.skipif(writes_into_locked_folders(), reason="this user writes into any folder (root): run the "
                    "permission cases as an ordinary user, or as root without CAP_DAC_OVERRIDE")
@pytest.mark.parametrize("name", PERMISSION)
def test_permission_denied_is_one_line(name: str, here: Path, digits_labels: np.ndarray,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    record(here / "run")
    (here / "ro").mkdir()
    good_scores(here / "ro" / "g.npz", digits_labels)
    before = snapshot(here)
    (here / "ro" / "g.npz").chmod(0)
    (here / "ro").chmod(0o555)
    kind, argv, message = PERMISSION[name]
    capsys.readouterr()
    try:
        status = exit_status(toy_upstream if kind == "toy" else cli.main, argv)
    finally:
        (here / "ro").chmod(0o755)
        (here / "ro" / "g.npz").chmod(0o644)
    assert status == 2
    one_error_line(capsys.readouterr().err, message)
    assert snapshot(here) == before


# -------------------------------------------------------------------------------------- strings from records
def test_strings_from_records_cannot_break_the_report_table(here: Path) -> None:
    """A run folder and a method named with Markdown's table syntax and a line break stay in their cells."""
    record(here / "top" / "a|b")
    (here / "top" / "a|b" / "result.json").write_text(json.dumps({"accuracy": [0.5], "method": "DM|x\n| evil |"}))
    assert cli.main(["report", "top", "--out", "rep"]) == 0
    rows = [line for line in (here / "rep" / "report.md").read_text().splitlines() if "evil" in line]
    assert len(rows) == 1
    assert rows[0].replace("\\|", "").count("|") == 10


@pytest.mark.integration
def test_mtt_buffer_refuses_level2_before_it_makes_its_folder(here: Path) -> None:
    """MTT's own buffer.py, patched: ``--bilp-beta`` is refused as it parses, before it creates ``--buffer_path``
    (the code as it was refused it only once the data was loaded, the folder made)."""
    from upstreams import materialise

    pytest.importorskip("kornia", reason="MTT's utils.py imports kornia: pip install kornia")
    tree = materialise("mtt", here / "mtt")
    proc = subprocess.run([sys.executable, str(tree / "buffer.py"), "--dataset", "MNIST", "--data_path", "nowhere",
                           "--buffer_path", "experts", "--bilp", "--bilp-beta", "0.2"], cwd=here,
                          capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    one_error_line(proc.stderr, "--bilp-beta must be 0 for MTT")
    assert not (here / "experts").exists()


# ------------------------------------------------------------------------- 5. a class left empty; idle flags warned
def test_a_stratum_that_leaves_a_class_empty_is_refused_before_any_record(here: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Class 2 has 5 samples: decile S10 of its loss order holds none of them."""
    import torch

    from bilp_plugin.method import scorefile

    labels = np.r_[np.zeros(20), np.ones(20), np.full(5, 2)].astype(np.int64)
    scorefile.save(here / "s.npz", scorefile.ScoreFile(np.linspace(0, 1, len(labels)), labels,
                                                       scorefile.dataset_meta("toy", labels)))
    before = snapshot(here)
    capsys.readouterr()

    def run() -> int:
        from argparse import ArgumentParser

        from bilp_plugin import runtime

        parser = ArgumentParser(prog="toy.py")
        parser.add_argument("--init", default="noise")
        parser.add_argument("--ipc", type=int, default=1)
        runtime.add_arguments(parser)
        args = parser.parse_args(["--bilp", "--bilp-criterion", "stratum", "--bilp-stratum", "10",
                                  "--bilp-scores", "s.npz", "--bilp-out", "rec"])
        indices = [np.flatnonzero(labels == c).tolist() for c in range(3)]
        runtime.prune_real(args, indices, torch.as_tensor(labels), upstream="builtin", dataset="toy")
        return 0

    assert exit_status(lambda argv: run(), []) == 2
    one_error_line(capsys.readouterr().err, "keeps no sample of class 2 (of its 5)")
    assert snapshot(here) == before


IDLE: dict[str, tuple[list[str], str]] = {
    "side-with-beta-0": (["--bilp-side", "small"], "--bilp-side does nothing with --bilp-beta 0"),
    "interval-and-side-with-beta-0": (["--bilp-interval", "5", "--bilp-side", "large"],
                                      "--bilp-interval, --bilp-side do nothing with --bilp-beta 0"),
    "scores-with-random": (["--bilp-criterion", "random", "--bilp-scores", "s.npz"],
                           "--bilp-scores does nothing with --bilp-criterion random"),
}


@pytest.mark.parametrize("name", IDLE)
def test_flags_that_do_nothing_get_one_warning(name: str, here: Path, digits_labels: np.ndarray,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from argparse import ArgumentParser

    from bilp_plugin import runtime

    good_scores(here / "s.npz", digits_labels)
    parser = ArgumentParser(prog="toy.py")
    runtime.add_arguments(parser)
    capsys.readouterr()
    parser.parse_args(["--bilp", "--bilp-alpha", "0.5", *IDLE[name][0]])
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "warning:" in lines[0] and IDLE[name][1] in lines[0], lines
    parser.parse_args(["--bilp", "--bilp-alpha", "0.5", "--bilp-beta", "0.2", "--bilp-side", "small",
                       "--bilp-scores", "s.npz"])
    assert capsys.readouterr().err == ""


def test_table_size() -> None:
    tests = (len(CASES) + len(DISTRIBUTED) + 3 + REPORT_WRITES + 2 + len(POINT_WRITES) + len(FULL_DISK) + 1 + 1
             + 1 + len(IDLE) + 1 + len(PERMISSION))
    assert tests >= 60
