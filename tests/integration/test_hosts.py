"""``bilp sweep`` and ``bilp ablate`` on every host that launches a patched upstream (dc with DC, DSA and DM; idc;
idm), tiny settings on a 20-per-class CIFAR-10 subset of ``BILP_DATA`` with 100 test images: each point's
accuracy is the one the upstream printed for its evaluated network, the record is the point's, and the progress
lines name the point, the upstream's iteration and its evaluated network.

Each case skips visibly without its submodule, its imports or the data. About 1-2 minutes per host on 2 cores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bilp_plugin.cli import main
from bilp_plugin.lab import progress
from bilp_plugin.tools.layouts import write_cifar10_subset
from bilp_adapters.dc import host as dc_host
from bilp_adapters.idc import host as idc_host
from bilp_adapters.idm import host as idm_host

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_CLASS, TEST_PER_CLASS = 20, 10
TINY = ["--dataset", "cifar10", "--ipc", "1", "--batch-real", "8", "--eval-models", "1", "--eval-epochs", "2",
        "--seeds", "0", "--score-epochs", "1", "--width", "8", "--jobs", "1"]
CASES = {  # case: (host, iterations, flags, --upstream-args, where the upstream prints each network's accuracy)
    "dc-DC": ("dc", 2, ["--method", "DC"], "--model ConvNetW32", r"Evaluate_\d+:.*test acc = ([\d.]+)"),
    "dc-DSA": ("dc", 2, ["--method", "DSA"], "--model ConvNetW32", r"Evaluate_\d+:.*test acc = ([\d.]+)"),
    "dc-DM": ("dc", 2, ["--method", "DM"], "--model ConvNetW32", r"Evaluate_\d+:.*test acc = ([\d.]+)"),
    "idc": ("idc", 1, [], "--width 0.125 --inner_loop 2 --n_data 16 --batch_size 16",
            r"idc evaluation network \d+/\d+: top-1 ([\d.]+)"),
    "idm": ("idm", 3, [], "--trained_bs 64 --model_train_steps 2", r"Evaluate_\d+:.*test acc = ([\d.]+)"),
}
UNAVAILABLE = {"dc": lambda: dc_host.unavailable("cifar10"), "idc": lambda: idc_host.unavailable("cifar10"),
               "idm": lambda: idm_host.unavailable("cifar10")}


@pytest.fixture(scope="module")
def small_cifar(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10_subset(cifar10_root, root, PER_CLASS, TEST_PER_CLASS)
    return root


def _available(host: str) -> None:
    reason = UNAVAILABLE[host]()
    if reason is not None:
        pytest.skip(f"--host {host} is not available here: {reason}")


def _printed(log: Path, pattern: str, scale: float) -> list[float]:
    return [round(float(m) / scale, 4) for m in re.findall(pattern, log.read_text())]


@pytest.mark.parametrize("case", CASES)
def test_a_sweep_runs_on_the_patched_upstream_with_its_own_evaluation(
        case: str, small_cifar: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    host, iterations, flags, upstream, printed = CASES[case]
    _available(host)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)  # every step of the upstream is a line here
    assert main(["sweep", "--host", host, *TINY, *flags, "--iterations", str(iterations), "--data-root",
                 str(small_cifar), "--alphas", "0.5", "--criteria", "random", "--upstream-args", upstream,
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    results = json.loads((tmp_path / "sweep-results.json").read_text())
    assert results["by_alpha"]["random"]["0.5"]["real_kept"] == 10 * PER_CLASS // 2
    assert results["baseline"]["real_total"] == 10 * PER_CLASS
    scale = 100 if host == "idc" else 1
    for point in ("baseline-s0", "random-a0.5-s0"):
        run = tmp_path / "runs" / point
        result = json.loads((run / "result.json").read_text())
        assert result["host"] == host and len(result["accuracy"]) == 1
        assert [round(a, 4) for a in result["accuracy"]] == _printed(run / "upstream" / "log.txt", printed, scale)
        assert json.loads((run / "config.json").read_text())["upstream"] == host
        assert result["distill_s"] > 0  # the record's matching loop
        assert re.search(rf"bilp: {point}: distill \d+/\d+", err) and f"bilp: {point}: evaluate 1/1" in err
    assert (tmp_path / "runs" / "random-a0.5-s0" / "level1.json").is_file()
    assert "sweep: random-a0.5-s0 finished; 2/2 points done" in err


def test_the_ablation_runs_level_2_through_the_patched_upstream(small_cifar: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    _available("dc")
    assert main(["ablate", "--host", "dc", *TINY, "--method", "DM", "--iterations", "4", "--data-root",
                 str(small_cifar), "--alpha", "0.5", "--beta", "0.25", "--upstream-args", "--model ConvNetW32",
                 "--out", str(tmp_path)]) == 0
    rows = {r["setting"]: r for r in json.loads((tmp_path / "ablate-results.json").read_text())["rows"]}
    for setting in ("small", "large", "both"):
        config = json.loads((tmp_path / "runs" / f"{setting}-s0" / "config.json").read_text())
        assert config["upstream"] == "dc" and config["bilp"]["side"] == setting
        assert 0 < rows[setting]["level2_kept"] <= 1 and rows[setting]["ite_share"] > 0
    assert rows["none"]["level2_kept"] is None and rows["level1"]["real_kept"] == 10 * PER_CLASS // 2
    assert "| level 1 + prune both (BiLP) | ✓ | ✓ | ✓ |" in capsys.readouterr().out
