"""The datm adapter without the upstream: its checks, the subset record of an expert folder under DATM's script
names and the parse-time level-2 refusal."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bilp_adapters import experts
from bilp_adapters.datm import plugin

from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.runtime import flags
from subsets import run_checks

LABELS = np.repeat(np.arange(10), 20)


def datm_args(script: str, **over: Any) -> SimpleNamespace:
    """The arguments plugin code reads from buffer_FTD.py / DATM.py (after its config file)."""
    base = {"dataset": "CIFAR10", "model": "ConvNet", "buffer_path": "buffers", "zca": True, "subset": "imagenette",
            "res": 32}
    base.update({"num_experts": 1} if script == "buffer" else {"cfg": "c.yaml", "ipc": 1, "pix_init": "real"})
    return SimpleNamespace(**{**base, **over})


def subset(kept: np.ndarray | None, alpha: float = 0.9) -> dict[str, Any]:
    summary = None if kept is None else {"dataset": "CIFAR10", "scores": "s.json", "scores_sha256": "ab" * 32,
                                         "kept_per_class": np.bincount(LABELS[kept]).tolist()}
    return experts.describe_subset(LABELS, kept, BiLPConfig(alpha=alpha if kept is not None else 0.0), summary)


@pytest.mark.parametrize("script", ["buffer", "distill"])
def test_level2_is_refused_with_the_reason(script: str) -> None:
    with pytest.raises(BiLPError, match=r"--bilp-beta must be 0 for DATM, got 0.1: no real batch enters DATM's "
                                        r"matching loss"):
        run_checks(plugin, "datm", datm_args(script), BiLPConfig(beta=0.1), None)


def test_level2_is_refused_as_the_flags_are_parsed_with_only_cfg_known(capsys: pytest.CaptureFixture[str]) -> None:
    """DATM.py's first parse knows --cfg and the --bilp flags only: the refusal needs nothing else."""
    parser = argparse.ArgumentParser(prog="DATM.py")
    parser.add_argument("--cfg", type=str, default="")
    flags.add_arguments(parser, upstream="datm", level2=False)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--cfg", "c.yaml", "--bilp", "--bilp-beta", "0.2"])
    assert exit_.value.code == 2
    assert "error: --bilp-beta must be 0 for DATM, got 0.2: no real batch" in capsys.readouterr().err


def test_a_command_line_parsed_twice_warns_once(capsys: pytest.CaptureFixture[str]) -> None:
    """DATM.py parses its command line again once the config's keys are added: one check, one warning."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg", type=str, default="")
    flags.add_arguments(parser, upstream="datm", level2=False)
    parser.parse_args(["--cfg", "c.yaml", "--bilp-alpha", "0.5"])
    parser.add_argument("--ipc", type=int, default=1)
    parser.parse_args(["--cfg", "c.yaml", "--bilp-alpha", "0.5"])
    assert capsys.readouterr().err.count("given without --bilp") == 1


@pytest.mark.parametrize("pix_init", plugin.REAL_INIT)
def test_real_initialisation_needs_ipc_kept_images_per_class(pix_init: str) -> None:
    args = datm_args("distill", ipc=3, pix_init=pix_init)
    config = BiLPConfig(alpha=0.9, criterion="random")
    run_checks(plugin, "datm", args, config, [3] * 10)
    with pytest.raises(BiLPError, match=rf"pix_init {pix_init} needs ipc 3 .* keeps only 2"):
        run_checks(plugin, "datm", args, config, [3] * 9 + [2])
    run_checks(plugin, "datm", datm_args("buffer"), config, [2] * 10)


def test_distill_without_scores_names_the_file_buffer_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/x/distill/DATM_tesla.py"])
    args = datm_args("distill", buffer_path=str(tmp_path))
    kept = np.arange(0, 200, 10)
    experts.record_subset(experts.expert_dir(args), subset(kept), kept)
    with pytest.raises(BiLPError, match=r"DATM_tesla.py --bilp --bilp-criterion loss needs --bilp-scores FILE: pass "
                                        r"the score file buffer_FTD.py used \(s.json"):
        run_checks(plugin, "datm", args, BiLPConfig(alpha=0.9), None)
    run_checks(plugin, "datm", args, BiLPConfig(alpha=0.9, criterion="random"), None)


def test_stage_and_expert_dir_follow_the_scripts() -> None:
    assert plugin.stage(datm_args("buffer")) == "buffer" and plugin.stage(datm_args("distill")) == "distill"
    assert experts.expert_dir(datm_args("buffer")) == Path("buffers/CIFAR10/ConvNet")
    assert experts.expert_dir(datm_args("distill", zca=False)) == Path("buffers/CIFAR10_NO_ZCA/ConvNet")
    with pytest.raises(BiLPError, match="buffer_FTD.py, DATM.py or DATM_tesla.py"):
        plugin.stage(SimpleNamespace(dataset="CIFAR10"))


def test_distill_refuses_experts_of_another_subset_naming_both(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["DATM.py"])
    folder = tmp_path / "experts"
    kept = np.arange(0, 200, 10)
    experts.record_subset(folder, subset(kept), kept)
    (folder / "replay_buffer_0.pt").write_bytes(b"")
    experts.verify_subset(folder, subset(kept), plugin.scripts())
    with pytest.raises(BiLPError, match=r"trained on 20 of 200 samples .* but this DATM.py run keeps the full set "
                                        r"\(200 samples\): pass DATM.py the --bilp flags buffer_FTD.py was run with"):
        experts.verify_subset(folder, subset(None), plugin.scripts())
    with pytest.raises(BiLPError, match=r"no experts in .*: run buffer_FTD.py with the same --bilp flags first"):
        experts.verify_subset(tmp_path / "none", subset(None), plugin.scripts())


def test_host_is_refused_saying_why() -> None:
    with pytest.raises(BiLPError, match="--host datm is not offered"):
        plugin.make_host()


def test_bilp_values_survive_wandb_disabled_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """DATM.py rebuilds ``args`` from ``wandb.config._items`` as MTT's distill.py does; with --cfg in front."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    Path("s.json").write_text("[0.5, 0.25]")
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg", type=str, default="")
    flags.add_arguments(parser, upstream="datm", level2=False)
    args = parser.parse_args(["--cfg", "c.yaml", "--bilp", "--bilp-alpha", "0.9", "--bilp-scores", "s.json"])
    wandb.init(sync_tensorboard=False, project="TEST", job_type="CleanRepo", config=args)
    try:
        rebuilt = type("", (), {})()
        for key in wandb.config._items:
            setattr(rebuilt, key, wandb.config._items[key])
    finally:
        wandb.finish()
    assert flags.from_args(rebuilt) == flags.from_args(args) and rebuilt.cfg == "c.yaml"
