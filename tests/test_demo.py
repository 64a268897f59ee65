"""``bilp demo`` and its built-in host: the host drives BiLP only through the facade, its adapter's ITE is the
ITE of the loss the host optimises, and the demo writes records, results and a report without overwriting."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bilp_plugin.commands.flags import add_host_flags
from bilp_plugin.lab import curve, demo, host, hosts, launched
from bilp_plugin.method import ite, level1, scorefile
from bilp_adapters.dc import host as dc_host
from bilp_plugin.cli import main
from bilp_plugin.lab.datasets import load_dataset
from bilp_plugin.errors import BiLPError
from bilp_plugin.method.convnet import ConvNet
from bilp_plugin.method.matchstep import MatchStep

TINY_HOST = ["--ipc", "1", "--iterations", "2", "--width", "8", "--batch-real", "8", "--eval-models", "1",
             "--eval-epochs", "2", "--threads", "1"]
TINY_DEMO = ["--dataset", "digits", "--iterations", "2", "--seeds", "0", "--width", "8", "--batch-real", "8",
             "--eval-models", "1", "--eval-epochs", "2", "--score-epochs", "1", "--jobs", "1", "--no-strata",
             "--no-curve"]


@pytest.fixture(scope="module")
def digits() -> tuple:
    return load_dataset("digits"), load_dataset("digits", train=False)


def _step(method: str, real: torch.Tensor, syn: torch.Tensor, net: ConvNet) -> MatchStep:
    args = host.parse(["--method", method, "--ipc", str(len(syn))])
    return MatchStep("builtin", 3, real, torch.full((len(real),), 3), net, syn, args, 0)


@pytest.mark.parametrize("method", ["DM", "DC"])
def test_builtin_ite_is_the_leave_one_out_ite_of_the_hosts_meta_loss(digits: tuple, method: str) -> None:
    """The host's DC/DM losses (written as the host computes them) against the adapter's meta_grad."""
    from bilp_adapters.builtin import plugin

    real_set = digits[0]
    members = torch.nonzero(real_set.labels == 3).flatten()
    real, syn = real_set.images[members[2:10]], real_set.images[members[:2]].clone().requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ConvNet(1, 10, width=8, im_size=(8, 8))
    params = list(net.parameters())

    def meta_loss(batch: torch.Tensor, s: torch.Tensor) -> torch.Tensor:  # host._dm_iteration / _dc_iteration
        if method == "DM":
            return ite.MEAN_EMBEDDING((net.embed(s).mean(0),), (net.embed(batch).detach().mean(0),))
        gw_real = [g.detach() for g in torch.autograd.grad(
            F.cross_entropy(net(batch), torch.full((len(batch),), 3)), params)]
        gw_syn = torch.autograd.grad(F.cross_entropy(net(s), torch.full((len(s),), 3)), params, create_graph=True)
        return ite.dc_distance("ours")(tuple(gw_syn), tuple(gw_real))

    expected = ite.ite_norms(ite.ite_naive(meta_loss, real, syn))
    got = plugin.meta_grad(_step(method, real, syn, net), "exact")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("method", ["DM", "DC"])
def test_enabled_but_inert_host_is_bit_for_bit_the_plain_host(digits: tuple, tmp_path: Path, method: str) -> None:
    real = digits[0]
    plain = host.distill(host.parse(["--method", method, *TINY_HOST]), real)
    inert = host.distill(host.parse(["--method", method, *TINY_HOST, "--bilp", "--bilp-out", str(tmp_path)]), real)
    assert torch.equal(plain.images, inert.images) and (tmp_path / "config.json").is_file()


def test_host_levels_1_and_2_go_through_the_facade(digits: tuple, tmp_path: Path) -> None:
    real, _ = digits
    score_path = tmp_path / "scores.npz"
    fake = scorefile.ScoreFile(np.arange(len(real), dtype=float)[::-1].copy(), real.labels.numpy(),
                            scorefile.dataset_meta("digits", real.labels.numpy()))
    scorefile.save(score_path, fake)
    args = host.parse(["--method", "DC", *TINY_HOST, "--batch-real", "16", "--bilp", "--bilp-alpha", "0.5",
                       "--bilp-beta", "0.3", "--bilp-interval", "1", "--bilp-scores", str(score_path),
                       "--bilp-out", str(tmp_path / "run")])
    result = host.run(args)
    kept = np.load(tmp_path / "run" / "kept_indices.npy")
    assert np.array_equal(kept, level1.keep_lowest(fake.scores, fake.labels, 0.5))
    assert result["real_kept"] == len(kept) == 753
    rows = [json.loads(line) for line in (tmp_path / "run" / "level2.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 10 and all(1 <= r["kept"] <= r["batch"] == 16 for r in rows)
    assert sum(r["kept"] for r in rows) < 16 * 20
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["selections"] == 20 and summary["ite_s"] > 0
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk["accuracy"] == result["accuracy"] and 0 <= on_disk["accuracy_mean"] <= 1


@pytest.mark.parametrize("method", ["DM", "DC"])
def test_host_level2_keeps_one_minus_beta_of_the_real_rows(method: str, tmp_path: Path) -> None:
    """The default rule keeps 1 - beta of the rows of a whole run (within 3 points), a fresh network every
    iteration: 30 iterations, a selection at every draw (300 selections of 32 rows), a ConvNet of width 16."""
    args = host.parse(["--method", method, "--ipc", "1", "--iterations", "30", "--width", "16", "--batch-real", "32",
                       "--eval-models", "1", "--eval-epochs", "1", "--threads", "1", "--bilp", "--bilp-beta", "0.2",
                       "--bilp-interval", "1", "--bilp-out", str(tmp_path / "run")])
    host.run(args)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rule"] == "relative" and summary["selections"] == 300 and summary["rows"] == 300 * 32
    assert abs(summary["kept_rows"] / summary["rows"] - 0.8) <= 0.03, summary


def test_demo_writes_table_records_and_report_and_never_overwrites(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", *TINY_DEMO, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for label in ("baseline (full real set)", "BiLP level 1 (loss, alpha=0.5)",
                  "BiLP levels 1+2 (alpha=0.5, beta=0.2)", "random subset (alpha=0.5)"):
        assert label in printed
    assert "| 753/1500 |" in printed and "| 1500/1500 |" in printed
    results = json.loads((out / "results.json").read_text())
    assert [r["setting"] for r in results["rows"]] == ["baseline", "level1", "level12", "random"]
    for name in ("baseline-s0", "loss-a0.5-s0", "level12-s0", "random-a0.5-s0"):
        assert {"config.json", "summary.json", "result.json"} <= {p.name for p in (out / "runs" / name).iterdir()}
    kept_level1 = np.load(out / "runs" / "loss-a0.5-s0" / "kept_indices.npy")
    own = scorefile.load(out / "scores.npz")
    assert np.array_equal(kept_level1, level1.keep_lowest(own.scores, own.labels, 0.5))
    assert len(np.load(out / "runs" / "random-a0.5-s0" / "kept_indices.npy")) == len(kept_level1)
    level12 = next(r for r in results["rows"] if r["setting"] == "level12")
    assert 0 < level12["level2_kept"] < 1 and f"| {100 * level12['level2_kept']:.1f}% |" in printed
    report = (out / "report" / "report.md").read_text()
    assert "![score histograms]" in report and "![level 2]" in report and "Stratified" in report
    assert main(["demo", *TINY_DEMO, "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    (out / "results.md").write_text("old")
    assert main(["demo", *TINY_DEMO, "--out", str(out), "--force", "--jobs", "2"]) == 0  # two processes
    assert (out / "results.md").read_text() != "old"
    again = json.loads((out / "results.json").read_text())
    assert [r["accuracy_mean"] for r in again["rows"]] == [r["accuracy_mean"] for r in results["rows"]]


def test_demo_shows_the_accuracy_against_alpha_curve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--curve adds level 1 by loss and random at each curve alpha; the table's rows are its points at --alpha."""
    out = tmp_path / "demo"
    tiny = [f for f in TINY_DEMO if f != "--no-curve"]
    assert main(["demo", *tiny, "--curve-alphas", "0.9", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in (out / "runs").iterdir()) == [
        "baseline-s0", "level12-s0", "loss-a0.5-s0", "loss-a0.9-s0", "random-a0.5-s0", "random-a0.9-s0"]
    assert "| alpha | loss | random |" in printed and "| 0.9 |" in printed
    assert "max alpha within the baseline's std: loss" in printed and "report/alpha-curve.png" in printed
    assert "not a standard error: the standard error of a mean is std / 1.0" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["max_alpha"]) == {"loss", "random"}
    report = (out / "report" / "report.md").read_text()
    assert "![accuracy against alpha](alpha-curve.png)" in report and (out / "report" / "alpha-curve.png").is_file()
    with pytest.raises(SystemExit) as refused:  # refused by the parser, before any work
        main(["demo", *tiny, "--curve-alphas", "1.5", "--out", str(tmp_path / "bad")])
    assert refused.value.code == 2
    assert "--curve-alphas must be in [0, 1)" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def _demo_args(*argv: str) -> argparse.Namespace:
    from bilp_plugin.cli import build_parser

    return build_parser().parse_args(["demo", *argv])


def test_demo_runs_cifar10_where_the_data_root_holds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from fake_data import write_cifar10

    monkeypatch.delenv("BILP_DATA", raising=False)
    args = demo.resolve(_demo_args())
    assert args.dataset == "digits" and args.seeds == "0,1,2" and args.strata and args.host == "builtin"
    err = capsys.readouterr().err
    assert "no data root" in err and "--host dc" not in err and "Sec. 5.5" in err
    root = write_cifar10(tmp_path / "data", per_class=2, test_per_class=1)
    monkeypatch.setenv("BILP_DATA", str(root))
    args = demo.resolve(_demo_args("--seeds", "0"))
    assert (args.dataset, args.alpha, args.curve_alphas, args.strata, args.score_epochs, args.seeds) == \
        ("cifar10", 0.9, "0.5,0.9,0.99", False, 2, "0")  # the preset, but the flag given wins
    assert "CIFAR-10 found" in capsys.readouterr().err
    assert demo.resolve(_demo_args("--dataset", "digits")).alpha == 0.5
    assert demo.resolve(_demo_args("--data-root", str(tmp_path))).dataset == "digits"  # no CIFAR-10 there


def test_download_fetches_cifar10_once_and_says_so_when_it_cannot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import torchvision.datasets
    from fake_data import write_cifar10

    fetched: list[str] = []

    def fetch(root: str, train: bool, download: bool) -> None:  # what torchvision's CIFAR10 leaves on disk
        assert download and train
        fetched.append(root)
        write_cifar10(Path(root), per_class=2, test_per_class=1)

    monkeypatch.delenv("BILP_DATA", raising=False)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fetch)
    args = demo.resolve(_demo_args("--download", str(tmp_path / "data")))
    assert fetched == [str(tmp_path / "data")] and (args.dataset, args.data_root) == ("cifar10", str(tmp_path / "data"))

    def offline(root: str, train: bool, download: bool) -> None:
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(BiLPError, match="cannot download CIFAR-10 .* without a connection, pass --data-root DIR"):
        demo.resolve(_demo_args("--download", str(tmp_path / "none")))


@pytest.mark.parametrize(("loss", "words"), [
    ((0.30, 0.31), "Pruning by loss beat random selection of the same size beyond noise at alpha 0.9"),
    ((0.25, 0.26), "Pruning by loss did not beat random selection of the same size beyond noise"),
    ((0.20, 0.21), "Pruning by loss did worse than random selection of the same size at alpha 0.9")])
def test_the_verdict_says_what_the_curve_shows(loss: tuple[float, float], words: str) -> None:
    by_name = {"baseline-s0": {"accuracy": [0.26]}, "baseline-s1": {"accuracy": [0.25]},
               "loss-a0.9-s0": {"accuracy": [loss[0]]}, "loss-a0.9-s1": {"accuracy": [loss[1]]},
               "random-a0.9-s0": {"accuracy": [0.25]}, "random-a0.9-s1": {"accuracy": [0.26]}}
    result_curve = curve.Curve.from_results(by_name, [0.9], [0, 1], list(curve.CRITERIA))
    text = demo.verdict(by_name, result_curve, [0, 1], "digits")
    assert words in text and "loss minus random at alpha 0.9" in text and "within the baseline's std" in text
    assert ("Sec. 5.5" in text) == ("beat random selection of the same size beyond noise at" not in text)
    one = demo.verdict({k: v for k, v in by_name.items() if k.endswith("s0")},
                       curve.Curve.from_results(by_name, [0.9], [0], list(curve.CRITERIA)), [0], "cifar10")
    assert "one seed gives no noise estimate" in one


def test_force_never_removes_a_folder_that_is_not_a_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", *TINY_DEMO, "--out", str(tmp_path), "--force"]) == 2
    assert "not a demo folder" in capsys.readouterr().err and (tmp_path / "precious.txt").is_file()


def _host_args(**changes: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_host_flags(parser, iterations=3, seeds="0")
    return argparse.Namespace(**{**vars(parser.parse_args([])), **changes})


def test_host_dc_on_digits_is_refused_and_auto_falls_back(tmp_path: Path) -> None:
    with pytest.raises(BiLPError, match="does not load 'digits'"):
        hosts.make_host(_host_args(host="dc"), tmp_path)
    assert isinstance(hosts.make_host(_host_args(host="auto"), tmp_path), hosts.BuiltinHost)


def test_dc_availability_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "adapters" / "dc").mkdir(parents=True)
    assert "no plugin.py" in dc_host.unavailable("mnist", tmp_path)
    (tmp_path / "adapters" / "dc" / "plugin.py").write_text("")
    (tmp_path / "adapters" / "dc" / "manifest.toml").write_text(
        'name = "dc"\nupstream = "u"\npath = "third_party/DC"\ncommit = "abc"\npatches = []\n')
    assert "lists no patches" in dc_host.unavailable("mnist", tmp_path)
    (tmp_path / "adapters" / "dc" / "manifest.toml").write_text(
        'name = "dc"\nupstream = "u"\npath = "third_party/DC"\ncommit = "abc"\npatches = ["0001-x.patch"]\n')
    assert "git submodule update --init third_party/DC" in dc_host.unavailable("mnist", tmp_path)


def _dc(tmp_path: Path, **changes: object) -> dc_host.DcHost:
    """A dc host without its patched copy (for its launch lines)."""
    dc = object.__new__(dc_host.DcHost)
    dc.options, dc.python, dc.tree, dc.n_real = _host_args(**changes), "py", tmp_path / "tree", 60000
    dc.extra = hosts.upstream_args(dc.options)
    return dc


def test_dc_command_and_result(tmp_path: Path) -> None:
    """The launch line a point becomes, and the upstream's res_*.pt read back as result.json."""
    dc = _dc(tmp_path, dataset="mnist", data_root=str(tmp_path), method="DC", eval_models=2)
    point = hosts.Point("level1-s3", alpha=0.5, seed=3)
    [launch] = dc.launches(point, tmp_path / "run", tmp_path / "s.npz")
    cmd = launch.command
    assert cmd[:8] == ["py", "-m", "bilp_plugin", "launch", "--seed", "3", "--fake-clock", "--threads"]
    text = " ".join(cmd)
    assert f"{tmp_path / 'tree' / 'main.py'} -- --dataset MNIST" in text and "--method DC" in text
    assert "--eval_mode end" in text and "--num_eval 2" in text and "--Iteration 3" in text
    assert text.endswith(f"--bilp-scores {tmp_path / 's.npz'} --bilp-out {tmp_path / 'run'}")
    assert launch.cwd == tmp_path / "run" / "upstream"
    run_dir = tmp_path / "run"
    (run_dir / "upstream").mkdir(parents=True)
    torch.save({"data": [], "accs_all_exps": {"ConvNet": [0.5, 0.7]}},
               run_dir / "upstream" / "res_DC_MNIST_ConvNet_1ipc.pt")
    (run_dir / "level1.json").write_text(json.dumps({"kept": 30000, "n": 60000}))
    (run_dir / "summary.json").write_text(json.dumps({"matching_loop_s": 4.0}))
    accuracy, evaluation = dc.evaluated(run_dir)
    result = launched.result(run_dir, "dc", "DC", dc.options, point, 60000, accuracy, 10.0, evaluation)
    assert result["accuracy"] == [0.5, 0.7] and result["real_kept"] == 30000 and result["eval_s"] == 6.0
    assert result["eval"] == {"models": 2, "epochs": 1000, "model": "ConvNet"}  # main.py: 1000 epochs on MNIST
    inside = launched.result(run_dir, "dc", "DC", dc.options, point, 60000, accuracy, 10.0, evaluation, 1.5)
    assert inside["distill_s"] == 2.5 and inside["eval_s"] == 7.5  # the evaluation inside the matching loop


def test_dc_methods_and_upstream_args(tmp_path: Path) -> None:
    """DSA runs main.py with the README's DSA settings, DM main_DM.py; --upstream-args come last (they win)."""
    point = hosts.Point("x", seed=0)
    dsa = _dc(tmp_path, dataset="cifar10", data_root=str(tmp_path), method="DSA",
              upstream_args="--lr_img 0.5 --init noise")
    text = " ".join(dsa.launches(point, tmp_path / "run", tmp_path / "s.npz")[0].command)
    assert "--skip-cifar-integrity" in text and "main.py -- --dataset CIFAR10" in text
    assert "--method DSA --init real --dsa_strategy color_crop_cutout_flip_scale_rotate" in text
    assert text.endswith("--bilp-out " + str(tmp_path / "run") + " --lr_img 0.5 --init noise")
    assert dc_host.eval_epochs(dsa.options) == 1000  # DSA always trains its evaluation networks for 1000 epochs
    dm = _dc(tmp_path, dataset="mnist", data_root=str(tmp_path), method="DM", eval_epochs=7)
    text = " ".join(dm.launches(point, tmp_path / "run", tmp_path / "s.npz")[0].command)
    assert "main_DM.py -- --dataset MNIST" in text and "--method" not in text.split(" -- ", 1)[1]
    assert dc_host.eval_epochs(dm.options) == 7
    with pytest.raises(BiLPError, match="does not parse"):
        hosts.upstream_args(_host_args(upstream_args="--init 'real"))


@pytest.mark.integration
def test_demo_on_the_patched_dc_upstream(tmp_path: Path, mnist_root: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    reason = dc_host.unavailable("mnist")
    if reason is not None:
        pytest.skip(f"--host dc is not available here: {reason}")
    labels = load_dataset("mnist", str(mnist_root)).labels.numpy()
    fake = scorefile.ScoreFile(np.random.default_rng(0).random(len(labels)), labels,
                            scorefile.dataset_meta("mnist", labels))
    scorefile.save(tmp_path / "scores.npz", fake)  # scoring MNIST is not what this test is about
    assert main(["demo", "--host", "dc", "--dataset", "mnist", "--data-root", str(mnist_root), "--iterations", "2",
                 "--seeds", "0", "--eval-models", "1", "--eval-epochs", "2", "--scores", str(tmp_path / "scores.npz"),
                 "--batch-real", "16", "--no-strata", "--no-curve", "--out", str(tmp_path / "demo")]) == 0
    assert "dc host" in capsys.readouterr().out
    result = json.loads((tmp_path / "demo" / "runs" / "level12-s0" / "result.json").read_text())
    assert result["host"] == "dc" and len(result["accuracy"]) == 1
    assert (tmp_path / "demo" / "runs" / "level12-s0" / "level2.jsonl").is_file()


def test_host_module_runs_as_a_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["host", *TINY_HOST])
    host.main()
    assert "DM digits ipc 1: accuracy" in capsys.readouterr().out
