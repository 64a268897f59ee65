"""The mtt adapter without the upstream: its checks, the subset record of an expert folder, wandb's config."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from bilp_adapters import experts as folders
from bilp_adapters.mtt import plugin

from bilp_plugin.runtime import flags
from bilp_plugin.config import BiLPConfig
from bilp_plugin.errors import BiLPError
from subsets import run_checks

LABELS = np.repeat(np.arange(10), 20)


def mtt_args(script: str, **over: Any) -> SimpleNamespace:
    """The arguments plugin code reads from buffer.py / distill.py."""
    base = {"dataset": "CIFAR10", "model": "ConvNet", "buffer_path": "buffers", "zca": False, "subset": "imagenette",
            "res": 128}
    base.update({"num_experts": 1} if script == "buffer" else {"syn_steps": 2, "ipc": 1, "pix_init": "real"})
    return SimpleNamespace(**{**base, **over})


def subset(kept: np.ndarray | None, alpha: float = 0.9) -> dict[str, Any]:
    summary = None if kept is None else {"dataset": "CIFAR10", "scores": "s.json", "scores_sha256": "ab" * 32,
                                         "kept_per_class": np.bincount(LABELS[kept]).tolist()}
    return folders.describe_subset(LABELS, kept, BiLPConfig(alpha=alpha if kept is not None else 0.0), summary)


def experts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "replay_buffer_0.pt").write_bytes(b"")
    return folder


@pytest.mark.parametrize("script", ["buffer", "distill"])
def test_level2_is_refused_with_the_reason(script: str) -> None:
    with pytest.raises(BiLPError, match=r"--bilp-beta must be 0 for MTT, got 0.1: MTT's trajectory-matching loss "
                                        r"sees no real samples"):
        run_checks(plugin, "mtt", mtt_args(script), BiLPConfig(beta=0.1), None)


def test_pix_init_real_needs_ipc_kept_images_per_class() -> None:
    args = mtt_args("distill", ipc=3)
    run_checks(plugin, "mtt", args, BiLPConfig(alpha=0.9, criterion="random"), [3] * 10)
    with pytest.raises(BiLPError, match=r"--pix_init real needs --ipc 3 .* keeps only 2"):
        run_checks(plugin, "mtt", args, BiLPConfig(alpha=0.9, criterion="random"), [3] * 9 + [2])
    run_checks(plugin, "mtt", mtt_args("distill", ipc=3, pix_init="noise"), BiLPConfig(alpha=0.9, criterion="random"),
               [2] * 10)


def test_distill_without_scores_names_the_file_buffer_used(tmp_path: Path) -> None:
    args = mtt_args("distill", buffer_path=str(tmp_path))
    kept = np.arange(0, 200, 10)
    folders.record_subset(folders.expert_dir(args), subset(kept), kept)
    with pytest.raises(BiLPError, match=r"needs --bilp-scores FILE: pass the score file buffer.py used \(s.json"):
        run_checks(plugin, "mtt", args, BiLPConfig(alpha=0.9), None)
    run_checks(plugin, "mtt", args, BiLPConfig(alpha=0.9, criterion="random"), None)


def test_expert_dir_follows_the_scripts_rule() -> None:
    assert folders.expert_dir(mtt_args("buffer")) == Path("buffers/CIFAR10_NO_ZCA/ConvNet")
    assert folders.expert_dir(mtt_args("distill", zca=True)) == Path("buffers/CIFAR10/ConvNet")
    assert folders.expert_dir(mtt_args("buffer", dataset="ImageNet", subset="imagewoof", res=64)) == Path(
        "buffers/ImageNet/imagewoof/64/ConvNet")


def test_buffer_records_the_subset_and_distill_accepts_only_it(tmp_path: Path) -> None:
    folder = tmp_path / "experts"
    kept = np.arange(0, 200, 10)
    folders.record_subset(folder, subset(kept), kept)
    written = json.loads((folder / folders.SUBSET_FILE).read_text())
    assert written["kept"] == 20 and written["scores_sha256"] == "ab" * 32 and not written["full"]
    assert np.array_equal(np.load(folder / folders.KEPT_FILE), kept)
    folders.record_subset(experts(folder), subset(kept), kept)  # more experts of the same subset: fine
    folders.verify_subset(folder, subset(kept), plugin.SCRIPTS)
    with pytest.raises(BiLPError, match=r"trained on 20 of 200 samples .* this distill.py run keeps the full set"):
        folders.verify_subset(folder, subset(None), plugin.SCRIPTS)
    other = np.arange(1, 200, 10)
    with pytest.raises(BiLPError, match=r"holds experts trained on 20 of 200 .* would add experts trained on 20 of"):
        folders.record_subset(folder, subset(other), other)


def test_experts_without_record_are_the_full_set(tmp_path: Path) -> None:
    folder = experts(tmp_path / "experts")
    folders.verify_subset(folder, subset(None), plugin.SCRIPTS)
    kept = np.arange(0, 200, 10)
    with pytest.raises(BiLPError, match=r"trained on the full set \(no bilp_subset.json: trained without --bilp\)"):
        folders.verify_subset(folder, subset(kept), plugin.SCRIPTS)
    with pytest.raises(BiLPError, match=r"already holds experts trained without --bilp"):
        folders.record_subset(folder, subset(kept), kept)
    folders.record_subset(folder, subset(None), None)
    assert json.loads((folder / folders.SUBSET_FILE).read_text())["full"]


def test_distill_without_experts_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(BiLPError, match=r"no experts in .*: run buffer.py with the same --bilp flags first"):
        folders.verify_subset(tmp_path / "none", subset(None), plugin.SCRIPTS)


def test_bilp_values_survive_wandb_disabled_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """distill.py rebuilds ``args`` from ``wandb.config._items``. In disabled mode wandb still fills the config
    (plain values kept, tuples turned into lists, other objects into their repr strings): every --bilp value is
    a plain JSON value, so the rebuilt config is the one given."""
    wandb = pytest.importorskip("wandb", reason="MTT imports wandb: pip install -e '.[upstreams]'")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    Path("s.json").write_text("[0.5, 0.25]")  # --bilp-scores is read when the flags are parsed
    parser = argparse.ArgumentParser()
    parser.add_argument("--ipc", type=int, default=1)
    flags.add_arguments(parser)
    args = parser.parse_args(["--bilp", "--bilp-alpha", "0.9", "--bilp-scores", "s.json", "--bilp-out", "rec",
                              "--bilp-criterion", "stratum", "--bilp-stratum", "3"])
    wandb.init(sync_tensorboard=False, project="DatasetDistillation", job_type="CleanRepo", config=args)
    try:
        rebuilt = type("", (), {})()
        for key in wandb.config._items:
            setattr(rebuilt, key, wandb.config._items[key])
    finally:
        wandb.finish()
    assert rebuilt.bilp is True
    assert flags.from_args(rebuilt) == flags.from_args(args)
    assert all(type(getattr(rebuilt, k)) is type(v) for k, v in vars(args).items())


@pytest.mark.parametrize("script", ["buffer.py", "distill.py"])
def test_help_hides_the_level2_flags_it_refuses_and_says_why(script: str, tmp_path: Path) -> None:
    """The hook patch adds the flags with level2=False: --help lists level 1 only and explains; --bilp-beta still
    parses, so the adapter's refusal (above) names it."""
    import subprocess
    import sys

    from upstreams import materialise

    pytest.importorskip("kornia", reason="MTT's utils.py imports kornia: pip install -e '.[upstreams]'")
    tree = materialise("mtt", tmp_path / "mtt")
    text = subprocess.run([sys.executable, str(tree / script), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, check=True, env={**os.environ, "WANDB_MODE": "disabled"}).stdout
    assert "level 1 only in this script" in text and "--bilp-alpha" in text
    assert "level 2 (ITE pruning of real batches: --bilp-beta and its flags) is refused here" in " ".join(text.split())
    options = [line.split()[0] for line in text.splitlines() if line.startswith("  --bilp")]
    assert "--bilp-alpha" in options and "[--bilp-beta" not in text  # not listed, nor in the usage line
    assert all(flag not in options for flag in ("--bilp-beta", "--bilp-interval", "--bilp-ite", "--bilp-min-keep"))
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, level2=False)
    assert parser.parse_args(["--bilp", "--bilp-beta", "0.2"]).bilp_beta == 0.2
