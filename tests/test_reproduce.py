"""The reproduction scripts (``benchmarks/reproduce.py``, ``benchmarks/reproduction_doc.py``,
``benchmarks/score_agreement.py``) and the dc host's ``--model`` pass-through they use: plans, chunks that stop
within their budget and resume, shared baselines, the document generated from the folders, and the GPU plan's
first chunk run on the CPU with tiny settings."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bilp_plugin.errors import BiLPError
from bilp_plugin.lab import hosts, sweep
from bilp_adapters.dc import host as dc_host

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reproduce  # noqa: E402
import reproduction_doc  # noqa: E402
import score_agreement  # noqa: E402

TINY = ["--set", "iterations=2", "--set", "eval_models=1", "--set", "eval_epochs=2", "--set", "seeds=0",
        "--set", "alphas=0.5", "--set", "batch_real=8", "--set", "model=ConvNetW32", "--set", "threads=1"]


class FakeHost:
    """Accuracy by point: 0.80 at the baseline, falling with alpha faster for random; strata rise with K."""

    name = "fake"

    def __init__(self, ran: list[str], seconds: float = 0.0) -> None:
        self.ran, self.seconds = ran, seconds

    def run(self, point: hosts.Point, run_dir: Path, scores: Path) -> dict[str, Any]:
        self.ran.append(point.name)
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"started": "2026-01-02T03:04:05+00:00",
                                                         "bilp": {"alpha": point.alpha, "beta": point.beta}}))
        if point.criterion == "stratum":
            acc = 0.5 + 0.02 * (point.stratum or 0)
        else:
            acc = 0.80 - (0.3 if point.criterion == "random" else 0.01) * point.alpha + 0.01 * point.beta
        accs = [acc - 0.01 + 0.01 * point.seed, acc + 0.01 + 0.01 * point.seed]
        return {"accuracy": accs, "real_kept": 10, "real_total": 10, "distill_s": 1.0, "eval_s": 1.0,
                "wall_s": self.seconds}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    ran: list[str] = []
    monkeypatch.setattr(hosts, "make_host", lambda args, workdir: FakeHost(ran))
    monkeypatch.setattr(hosts, "score_file", lambda args, out: out / "scores.npz")
    return ran


def _tiny_cpu(tmp_path: Path, *extra: str) -> int:
    return reproduce.main(["--preset", "cpu", "--out", str(tmp_path / "out"), "--authors-scores", str(tmp_path),
                           "--our-scores", str(tmp_path / "ours.npz"), "--set", "seeds=0,1",
                           "--set", "alphas=0.5,0.9", "--set", "strata=1,5,10", *extra])


def test_each_step_is_the_sweep_of_exactly_its_points(tmp_path: Path) -> None:
    plan = reproduce.cpu_plan(tmp_path, tmp_path / "ours.npz")
    names = [c.name for c in plan.cells]
    assert names == ["dm-cifar10-ipc1-authors", "dm-cifar10-ipc1-ours", "dc-cifar10-ipc1-authors",
                     "dc-cifar10-ipc1-ours", "dm-mnist-ipc1-authors", "dc-mnist-ipc1-authors"]
    first = [s for s in plan.steps if s.cell == names[0]]
    assert [" ".join(reproduce.step_argv(s)) for s in first] == [
        "--seeds 0,1 --alphas 0.5,0.9,0.99 --criteria loss,random",
        "--seeds 0 --alphas 0 --criteria loss --strata 1,2,3,4,5,6,7,8,9,10",
        "--seeds 2 --alphas 0.5,0.9,0.99 --criteria loss,random"]
    args = reproduce.parse_sweep(reproduce.sweep_argv(plan.cells[0], tmp_path, first[1], None))
    assert [p.name for p in sweep.sweep_points(args)] == ["baseline-s0"] + [f"stratum{k:02d}-s0" for k in range(1, 11)]
    assert args.model == "ConvNetW32" and args.out == str(tmp_path / names[0])
    ours = " ".join(reproduce.sweep_argv(plan.cells[1], tmp_path, plan.steps[1], None))
    assert "--criteria loss" in ours and f"--scores {tmp_path / 'ours.npz'}" in ours
    assert [c.name for c in reproduce.cpu_plan(tmp_path, None).cells if c.scores == "ours"] == []
    gpu = reproduce.gpu_plan(tmp_path, None)
    assert gpu.cells[-1].level2 == {"beta": 0.1, "alpha_from": "dc-cifar10-ipc1-authors"}
    assert reproduce.fixed_argv(gpu.cells[0], tmp_path, None).count("--ipc") == 1


def test_overrides_change_every_cell_and_step(tmp_path: Path) -> None:
    plan = reproduce.apply_overrides(reproduce.cpu_plan(tmp_path, None), ["iterations=2", "seeds=0", "strata=1"])
    assert {c.options["--iterations"] for c in plan.cells} == {"2"}
    assert {s.seeds for s in plan.steps} == {"0"}
    assert {s.strata for s in plan.steps} == {"", "1"}
    with pytest.raises(BiLPError, match="KEY=VALUE"):
        reproduce.apply_overrides(plan, ["iterations"])


def test_queue_runs_every_point_once_and_shares_the_baseline(tmp_path: Path, fake: list[str],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert _tiny_cpu(tmp_path) == 0
    out = tmp_path / "out"
    ours = out / "dm-cifar10-ipc1-ours"
    shared = json.loads((ours / "points" / "baseline-s0.json").read_text())
    assert shared["shared_from"] == "dm-cifar10-ipc1-authors"
    assert not (ours / "runs" / "baseline-s0").exists()  # copied, not run
    assert sorted(p.stem for p in (ours / "points").glob("*.json")) == [
        "baseline-s0", "baseline-s1", "loss-a0.5-s0", "loss-a0.5-s1", "loss-a0.9-s0", "loss-a0.9-s1",
        "stratum01-s0", "stratum01-s1", "stratum05-s0", "stratum05-s1", "stratum10-s0", "stratum10-s1"]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cells"][1]["points"][:3] == ["baseline-s0", "baseline-s1", "loss-a0.5-s0"]
    progress = capsys.readouterr().out
    assert "points left" in progress and "all" in progress.splitlines()[-1]
    ran = len(fake)
    assert _tiny_cpu(tmp_path) == 0 and len(fake) == ran  # nothing reruns


def test_a_chunk_stops_within_its_budget_and_the_rerun_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ran: list[str] = []
    monkeypatch.setattr(hosts, "make_host", lambda args, workdir: FakeHost(ran, seconds=40.0))
    monkeypatch.setattr(hosts, "score_file", lambda args, out: out / "scores.npz")
    # A cell's first point may start with half the budget left; after it, each needs 1.1 x the cell's longest
    # stored point (40 s here, by the points' wall_s; the fake itself takes no time).
    assert _tiny_cpu(tmp_path, "--budget-s", "30") == reproduce.CHUNK_EXIT
    assert ran == ["baseline-s0"] and "rerun the same command" in capsys.readouterr().out
    assert _tiny_cpu(tmp_path, "--budget-s", "100") == 0
    assert ran[1] == "baseline-s1"  # the rerun continues where the first chunk stopped


def test_an_unfinished_point_is_named_in_the_next_chunk(tmp_path: Path, fake: list[str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "attempts.json").write_text(json.dumps({"dm-cifar10-ipc1-authors/baseline-s0": "earlier"}))
    assert _tiny_cpu(tmp_path) == 0
    assert "was started in an earlier chunk and did not finish" in capsys.readouterr().out


def test_table4_takes_the_best_loss_alpha_of_its_cell(tmp_path: Path, fake: list[str]) -> None:
    assert reproduce.main(["--preset", "gpu", "--out", str(tmp_path / "out"), "--authors-scores", str(tmp_path),
                           "--set", "seeds=0,1", "--set", "alphas=0.5,0.9"]) == 0
    points = tmp_path / "out" / "table4-bilp-dc-cifar10-ipc1" / "points"
    bilp, level1 = (json.loads((points / f"{k}-s1.json").read_text())["point"] for k in ("bilp", "level1"))
    assert (bilp["alpha"], bilp["beta"], level1["alpha"], level1["beta"]) == (0.5, 0.1, 0.5, 0.0)  # loss peaks at 0.5
    assert json.loads((points / "baseline-s0.json").read_text())["point"]["alpha"] == 0.0
    text = reproduction_doc.document([tmp_path / "out"], None, "unused")
    assert "| BiLP+DC (levels 1+2) | 80.1 ± 1.1 (se 0.5) | 30.5 ± 0.3 (Table 4) |" in text
    assert "BiLP+DC minus DC: -0.4 ± 0.7 (within noise) (paper: +2.2)" in text
    assert "## GPU scale: not run yet" not in text and "BiLP+DC above DC (Table 4): **not resolved" in text


def test_document_from_the_folders(tmp_path: Path, fake: list[str]) -> None:
    assert _tiny_cpu(tmp_path, "--set", "strata=1,2,3,4,5,6,7,8,9,10") == 0
    out = tmp_path / "out"
    for f in (out / "dc-mnist-ipc1-authors" / "points").glob("random-a0.9-*.json"):
        f.unlink()  # as if the queue had not reached them
    agreement = {"dataset": "cifar10", "n": 4, "files": {
        "ours": {"path": "o.npz", "meta": {"format": "bilp-scores/1", "model": "convnet", "width": 32}},
        "authors": {"path": "a.json", "meta": {"format": "authors-json"}}},
        "pairs": {"ours vs authors": score_agreement.compare(np.arange(4.0), np.arange(4.0), np.array([0, 0, 1, 1]),
                                                             (0.5,))}}
    text = reproduction_doc.document([out], agreement, "GPU-COMMAND")
    # random, loss (authors' scores), loss (ours), their difference; '*': within the baseline's std (80.5 ± 1.1)
    row = "| 0.9 | 53.5 ± 1.1 (se 0.5) | 79.6 ± 1.1 (se 0.5)* | 79.6 ± 1.1 (se 0.5)* | +26.1 ± 0.7 (resolved) |"
    assert row in text
    assert "| loss, authors' scores | 0.5 | 80.0 ± 1.1 (se 0.5) | -0.5 ± 0.7 (within noise) |" in text
    assert "| random | 0 | 0.85 |" in text and "| loss, authors' scores | 0.9 | 0.995 |" in text  # Tables 1-2
    assert "29.7 ± 0.3 (+3.7)" in text  # Table 3, DM CIFAR-10 ipc 1
    assert "**incomplete**: 2 of" in text and "missing" in text
    assert "GPU-COMMAND" in text and "ours vs authors" in text
    assert "DM cifar10 ipc 1, loss vs random (Tables 1-2): **reproduced**" in text
    assert "stratified curve (loss, authors' scores, Fig. 3): **reproduced (rising, S1 lowest)**" in text
    assert "no MNIST cell in Tables 1-3" in text
    assert "Table 4 (BiLP+DC, GPU scale) has not run" in text and "except Table 4" not in text  # the cpu preset
    mnist = [line for line in text.splitlines() if line.startswith("- DC mnist ipc 1 (no paper cell)")]
    assert mnist and not any("reproduced" in line for line in mnist)  # no paper number: what was seen
    assert reproduction_doc.main([str(out), "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# Reproducing")


@pytest.mark.parametrize(("resolved", "ratios", "paper_cell", "word"), [
    ({0.5: 1, 0.9: 1}, (0.99, 0.99), False, "loss ahead of random at every alpha"),
    ({0.5: 1, 0.9: 0}, (0.99, 0.99), False, "loss ahead of random"),
    ({0.5: 0, 0.9: -1}, (0.5, 0.99), False, "loss behind random"),
    ({0.5: 0, 0.9: 0}, (0.9, 0.9), False, "within noise"),
    ({0.5: 1, 0.9: 1}, (0.99, 0.9), True, "reproduced"),
    ({0.5: 1, 0.9: 1}, (0.99, 0.99), True, "not reproduced (equal ratios)")])
def test_cells_without_a_paper_number_say_what_was_seen(resolved: dict[float, int], ratios: tuple[float, float],
                                                        paper_cell: bool, word: str) -> None:
    assert reproduction_doc.t12_word(resolved, *ratios, paper_cell) == word


def test_spearman_and_overlap() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 20, 300).astype(float), rng.random(300)  # a has ties
    assert score_agreement.spearman(a, b) == pytest.approx(spearmanr(a, b)[0], abs=1e-12)
    labels = np.repeat([0, 1], 150)
    assert score_agreement.overlap(b, b, labels, 0.9) == 1.0
    assert score_agreement.overlap(b, -b, labels, 0.5) == 0.0
    report = score_agreement.compare(b, b + 0.01 * rng.random(300), labels)
    assert report["chance_overlap"]["0.9"] == pytest.approx(0.1) and len(report["spearman_per_class"]) == 2


def test_dc_host_passes_model_through(tmp_path: Path) -> None:
    """--model reaches the upstream, and its result file (named after the model) is the one read back."""
    args = reproduce.parse_sweep(["--host", "dc", "--dataset", "mnist", "--model", "ConvNetW32", "--eval-models",
                                  "2", "--data-root", str(tmp_path)])
    dc = object.__new__(dc_host.DcHost)
    dc.options, dc.python, dc.tree, dc.n_real = args, "py", tmp_path / "tree", 60000
    dc.extra = hosts.upstream_args(args)
    point = hosts.Point("baseline-s0")
    [launch] = dc.launches(point, tmp_path / "run", tmp_path / "s.npz")
    assert "--model ConvNetW32" in " ".join(launch.command)
    run_dir = tmp_path / "run"
    (run_dir / "upstream").mkdir(parents=True)
    torch.save({"accs_all_exps": {"ConvNetW32": [0.4, 0.6]}}, run_dir / "upstream" / "res_DM_MNIST_ConvNetW32_1ipc.pt")
    accuracy, evaluation = dc.evaluated(run_dir)
    assert accuracy == [0.4, 0.6] and evaluation["model"] == "ConvNetW32"
    with pytest.raises(BiLPError, match="--model ConvNetW32 names an upstream's network"):
        hosts.BuiltinHost(args)


@pytest.mark.integration
@pytest.mark.slow
def test_gpu_plan_first_chunk_on_cpu(tmp_path: Path, cifar10_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The GPU script's first chunk, tiny: a CIFAR-10 subset, the authors' scores sliced to it (or made up)."""
    reason = dc_host.unavailable("cifar10")
    if reason is not None:
        pytest.skip(f"--host dc is not available here: {reason}")
    from bilp_plugin.tools.layouts import write_cifar10_subset

    data = tmp_path / "data"
    kept = write_cifar10_subset(cifar10_root, data, 20, 10)
    (data / "CIFAR10_LossConverge.json").write_text(json.dumps(np.random.default_rng(0).random(len(kept)).tolist()))
    argv = ["--preset", "gpu", "--out", str(tmp_path / "gpu"), "--data-root", str(data), "--authors-scores",
            str(data), "--budget-s", "60", *TINY]
    assert reproduce.main(argv) == reproduce.CHUNK_EXIT
    first = sorted((tmp_path / "gpu" / "dc-cifar10-ipc1-authors" / "points").glob("*.json"))
    assert [p.stem for p in first][:1] == ["baseline-s0"]
    assert "rerun the same command to continue" in capsys.readouterr().out
    progress = json.loads((tmp_path / "gpu" / "progress.json").read_text())
    cell, point = progress["last"].split("/")  # tiny points: the chunk may reach the next cell
    assert progress["points_left"] > 0 and (tmp_path / "gpu" / cell / "points" / f"{point}.json").is_file()
