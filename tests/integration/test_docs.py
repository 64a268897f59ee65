"""The README's upstream example and every command of ``docs/adapter-*.md``, run as a user would
(:mod:`docs_commands`: a sandbox shaped like a fresh clone, this checkout's ``bilp`` on ``PATH``) with tiny settings
on fake data the test writes. Each test names its substitutions and asserts what the commands left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from docs_commands import run, sandbox, script, sh_blocks, with_venv
from fake_data import write_cifar10, write_mnist, write_tree
from upstreams import ROOT

from bilp_plugin.tools import apply

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def reverted(box: Path, name: str) -> bool:
    """The sandbox's upstream checkout holds the pinned files again."""
    row = apply.status_row(apply.Manifest.load(box / "adapters" / name))
    return row["pinned"] == "yes" and row["patched"] == "no" and row["clean"] == "yes"


def test_readme_upstream_example(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "project", ["dc"])
    data = write_mnist(tmp_path / "data", per_class=20, test_per_class=10)
    text = script(ROOT / "README.md", {"export BILP_DATA=$HOME/data": f"export BILP_DATA={data}",
                                       "--width 32 --epochs 2": "--width 8 --epochs 1", "--ipc 10": "--ipc 1",
                                       "--Iteration 2000": "--Iteration 0", "--epoch_eval_train 300":
                                       "--epoch_eval_train 2"}, section="## Using it with an upstream repo")
    assert text.startswith(". .venv/bin/activate")  # bare bilp and python below: the page activates the venv
    ran = run(text, box, with_venv(box))
    record = box / "runs" / "dm-mnist" / "bilp"
    assert json.loads((record / "level1.json").read_text())["kept_per_class"] == [10] * 10
    assert (record / "level2.jsonl").read_text().count("\n") == 10  # one selection per class
    summary = json.loads((record / "summary.json").read_text())
    assert summary["accuracy"]["final"] and summary["accuracy"]["networks"] == 1  # what main_DM.py printed
    assert "(printed, 1 networks)" in (box / "runs" / "dm-mnist" / "report" / "report.md").read_text()
    saved = torch.load(box / "runs" / "dm-mnist" / "res_DM_MNIST_ConvNet_1ipc.pt", weights_only=False)
    assert saved["data"][0][0].shape == (10, 1, 28, 28) and len(saved["accs_all_exps"]["ConvNet"]) == 1
    assert "mean = nan" not in ran.stdout and "Mean of empty slice" not in ran.stderr
    assert reverted(box, "dc")


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def test_readme_air_gapped_recipe(tmp_path: Path) -> None:
    """The README's air-gapped block, as printed, in a fresh clone of a project shaped like this one (the same
    ``.gitmodules``, a gitlink per upstream), with its own HOME and no system config: it initialises exactly the
    submodule it names, from a local bare mirror, at the pinned commit."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    git("init", "-q", cwd=upstream, env=env)
    (upstream / "main_DM.py").write_text("print('DM')\n")
    git("add", ".", cwd=upstream, env=env)
    git("commit", "-q", "-m", "upstream", cwd=upstream, env=env)
    pinned = git("rev-parse", "HEAD", cwd=upstream, env=env).strip()
    git("clone", "-q", "--mirror", str(upstream), str(home / "mirrors" / "DatasetCondensation.git"), cwd=tmp_path,
        env=env)
    project = tmp_path / "project"
    project.mkdir()
    git("init", "-q", cwd=project, env=env)
    shutil.copy(ROOT / ".gitmodules", project / ".gitmodules")
    paths = git("config", "-f", ".gitmodules", "--get-regexp", r"\.path$", cwd=project, env=env).split()[1::2]
    for path in paths:  # the other gitlinks name commits no mirror has: initialising them would fail
        sha = pinned if path == "third_party/DatasetCondensation" else "1" * 40
        git("update-index", "--add", "--cacheinfo", f"160000,{sha},{path}", cwd=project, env=env)
    git("add", ".gitmodules", cwd=project, env=env)
    git("commit", "-q", "-m", "project", cwd=project, env=env)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path, env=env)
    text = "\n".join(sh_blocks(ROOT / "README.md", "### Air-gapped machines"))
    assert "git submodule update --init third_party/DatasetCondensation" in text
    run(text, clone, {k: env[k] for k in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM")})
    assert git("rev-parse", "HEAD", cwd=clone / "third_party" / "DatasetCondensation", env=env).strip() == pinned
    assert (clone / "third_party" / "DatasetCondensation" / "main_DM.py").is_file()
    uninitialised = [p for p in paths if git("submodule", "status", p, cwd=clone, env=env).startswith("-")]
    assert len(paths) > 1 and uninitialised == [p for p in paths if p != "third_party/DatasetCondensation"]
    without = text.replace("GIT_CONFIG_COUNT=2", "GIT_CONFIG_COUNT=1")  # no protocol.file.allow
    git("submodule", "deinit", "-q", "-f", "third_party/DatasetCondensation", cwd=clone, env=env)
    shutil.rmtree(clone / ".git" / "modules")
    with pytest.raises(AssertionError, match="transport 'file' not allowed"):
        run(without, clone, {k: env[k] for k in ("HOME", "XDG_CONFIG_HOME", "GIT_CONFIG_NOSYSTEM")})


DOCS = ROOT / "docs"
TINY_SCORE = {"--epochs 2": "--epochs 1 --width 8"}


def test_adapter_dc_page(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "project", ["dc"])
    data = write_mnist(tmp_path / "data", per_class=20, test_per_class=10)
    text = script(DOCS / "adapter-dc.md", {"export BILP_DATA=$HOME/data": f"export BILP_DATA={data}", **TINY_SCORE,
                                            "--Iteration 500": "--Iteration 0", "--Iteration 2000": "--Iteration 0",
                                            "--ipc 10": "--ipc 1", "--epoch_eval_train 300": "--epoch_eval_train 2"})
    ran = run(text, box, {})
    assert "dc  " in ran.stdout and ran.stdout.count(" yes ") >= 1
    for name in ("dc-mnist", "dm-mnist"):
        assert json.loads((box / "runs" / name / "bilp" / "level1.json").read_text())["kept_per_class"] == [10] * 10
        assert (box / "runs" / name / "bilp" / "level2.jsonl").read_text().count("\n") == 10
    assert (box / "runs" / "report" / "report.md").is_file() and "mean = nan" not in ran.stdout
    assert reverted(box, "dc")


def test_adapter_mtt_page(tmp_path: Path) -> None:
    for package in ("kornia", "wandb"):
        pytest.importorskip(package, reason=f"MTT imports {package}: pip install -e '.[upstreams]'")
    box = sandbox(tmp_path / "project", ["mtt"])
    data = write_cifar10(tmp_path / "data", per_class=30, test_per_class=10)
    launch = "bilp launch --seed 0 --threads 1 --skip-cifar-integrity third_party/mtt-distillation/{} --"
    text = script(DOCS / "adapter-mtt.md", {
        "export BILP_DATA=$HOME/data": f"export BILP_DATA={data}", "pip install -e '.[upstreams]'": "true",
        **TINY_SCORE, "python third_party/mtt-distillation/buffer.py --dataset": launch.format("buffer.py") +
        " --dataset", "python third_party/mtt-distillation/distill.py --dataset": launch.format("distill.py") +
        " --dataset", "--model ConvNet": "--model ConvNetW32", "--train_epochs 50": "--train_epochs 2",
        "--num_experts 100": "--num_experts 1 --save_interval 1", "--ipc 10": "--ipc 1",
        "--syn_steps 30": "--syn_steps 2", "--expert_epochs 2": "--expert_epochs 1",
        "--max_start_epoch 20": "--max_start_epoch 1", "--Iteration 5000": "--Iteration 2",
        "--eval_it 500": "--eval_it 100", "--num_eval 5": "--num_eval 1", "--epoch_eval_train 1000":
        "--epoch_eval_train 1"})
    ran = run(text, box, {})
    assert "level 1 only in this script" in ran.stdout
    experts = box / "buffers" / "CIFAR10_NO_ZCA" / "ConvNetW32"
    assert json.loads((experts / "bilp_subset.json").read_text())["kept"] == 150
    assert json.loads((box / "runs" / "mtt-distill" / "level1.json").read_text())["kept"] == 150
    assert list((box / "logged_files" / "CIFAR10").glob("*/images_0.pt"))
    assert (box / "runs" / "mtt-report" / "report.md").is_file() and reverted(box, "mtt")


DATM_TINY = ("model: ConvNetW32\nipc: 1\nsyn_steps: 2\nexpert_epochs: 1\ncurrent_max_start_epoch: 1\n"
             "max_start_epoch: 1\nIteration: 2\neval_it: 100\nskip_first_eva: False\nnum_eval: 1\n"
             "epoch_eval_train: 1\nbatch_train: 64\npix_init: real\n")
"""Appended to the page's copy of DATM's IPC10.yaml (a repeated key's last value wins)."""


def test_adapter_datm_page(tmp_path: Path) -> None:
    for package in ("kornia", "wandb", "yacs"):
        pytest.importorskip(package, reason=f"DATM imports {package}: pip install -e '.[upstreams]'")
    box = sandbox(tmp_path / "project", ["datm"])
    data = write_cifar10(tmp_path / "data", per_class=30, test_per_class=10)
    (tmp_path / "tiny.yaml").write_text(DATM_TINY)
    launch = "bilp launch --seed 0 --threads 1 --skip-cifar-integrity third_party/DATM/{} --"
    text = script(DOCS / "adapter-datm.md", {
        "export BILP_DATA=$HOME/data": f"export BILP_DATA={data}", "pip install -e '.[upstreams]'": "true",
        **TINY_SCORE, "python third_party/DATM/buffer/buffer_FTD.py --dataset": launch.format("buffer/buffer_FTD.py")
        + " --dataset", "python third_party/DATM/distill/DATM.py --cfg": launch.format("distill/DATM.py") + " --cfg",
        "--model ConvNet ": "--model ConvNetW32 ", "--train_epochs 100": "--train_epochs 2",
        "--num_experts 100": "--num_experts 1 --save_interval 1", "--batch_train 256": "--batch_train 64",
        "> runs/ipc10.yaml": f"> runs/ipc10.yaml; cat {tmp_path / 'tiny.yaml'} >> runs/ipc10.yaml"})
    ran = run(text, box, {})
    assert "level 1 only in this script" in ran.stdout
    experts = box / "buffers" / "CIFAR10" / "ConvNetW32"
    assert json.loads((experts / "bilp_subset.json").read_text())["kept"] == 150
    assert json.loads((box / "runs" / "datm-distill" / "level1.json").read_text())["kept"] == 150
    assert list((box / "logged_files" / "CIFAR10" / "1" / "ConvNetW32").glob("*/Normal/images_0.pt"))
    assert (box / "runs" / "datm-report" / "report.md").is_file() and reverted(box, "datm")


def test_adapter_idc_page(tmp_path: Path) -> None:
    box = sandbox(tmp_path / "project", ["idc"])
    data = write_cifar10(tmp_path / "data", per_class=30, test_per_class=10)
    imagenet = write_tree(tmp_path / "imagenet", classes=6, per_class=6)
    condense = "bilp launch --seed 0 --cuda-to-cpu ../../third_party/Efficient-Dataset-Condensation/condense.py --"
    text = script(DOCS / "adapter-idc.md", {
        "export BILP_DATA=$HOME/data": f"export BILP_DATA={data}",
        "export IMAGENET=$HOME/imagenet": f"export IMAGENET={imagenet}", **TINY_SCORE,
        "--classes third_party/Efficient-Dataset-Condensation/misc/class100.txt": "--epochs 1 --width 8 "
        "--image-size 16", condense: condense.replace("--cuda-to-cpu", "--cuda-to-cpu --threads 1 "
                                                        "--skip-cifar-integrity"),
        "--reproduce -d cifar10 -f 2 --ipc 10": "-d cifar10 -f 2 --ipc 1 --niter 1 --inner_loop 2 --width 0.0625 "
        "--batch_real 8 --n_data 16 --batch_size 8 --metric mse", "--bilp-ite taylor": "--bilp-ite taylor "
        "--bilp-interval 50", "--reproduce -d imagenet": "-d imagenet",
        "--nclass 100 --dseed 0 --nclass_sub 20 --phase 0 --pt_from -1 -f 3 --ipc 10": "--nclass 6 --dseed 1 "
        "--nclass_sub 1 --phase 1 --pt_from -1 -f 1 --ipc 1 --niter 1 --inner_loop 2 --width 0.0625 --n_data 0 "
        "--batch_size 8 --workers 0 --bilp-interval 50"})
    ran = run(text, box, {})
    cifar = box / "runs" / "idc-cifar10"
    assert json.loads((cifar / "bilp" / "level1.json").read_text())["kept_per_class"] == [21] * 10
    assert torch.load(cifar / "results" / "test" / "data.pt")[0].shape == (10, 3, 32, 32)
    mp = box / "runs" / "idc-imagenet100-phase0"
    assert json.loads((mp / "level1.json").read_text())["kept_per_class"] == [5] * 6
    assert {json.loads(line)["class"] for line in (mp / "level2.jsonl").read_text().splitlines()} == {1}
    assert ("bilp: error: test.py parses IDC's --bilp flags (argument.py) but runs no BiLP" in ran.stderr
            and "exit status 2" in ran.stdout)
    assert (box / "runs" / "idc-report" / "report.md").is_file() and reverted(box, "idc")


def test_adapter_idm_page(tmp_path: Path) -> None:
    pytest.importorskip("kornia", reason="IDM's utils.py imports kornia: pip install -e '.[upstreams]'")
    box = sandbox(tmp_path / "project", ["idm"])
    data = write_cifar10(tmp_path / "data", per_class=30, test_per_class=10)
    imagenet = write_tree(tmp_path / "imagenet", classes=6, per_class=8)
    text = script(DOCS / "adapter-idm.md", {
        "export BILP_DATA=$HOME/data": f"export BILP_DATA={data}",
        "export IMAGENET=$HOME/imagenet": f"export IMAGENET={imagenet}", "pip install -e '.[upstreams]'": "true",
        **TINY_SCORE, "--data-root $IMAGENET/train --out": "--data-root $IMAGENET/train --epochs 1 --width 8 "
        "--image-size 16 --out", "python ../../third_party/IDM/IDM_cifar10.py --dataset": "bilp launch --seed 0 "
        "--threads 1 --skip-cifar-integrity ../../third_party/IDM/IDM_cifar10.py -- --dataset",
        "--model ConvNet --ipc 10": "--model ConvNet --ipc 1",
        "--model ConvNet_6 --ipc 10": "--model ConvNet_6 --ipc 1",
        "--num_exp 5 --num_eval 5": "--num_exp 1 --num_eval 1", "--eval_interval 100 --outer_loop": "--eval_interval "
        "3 --Iteration 3 --epoch_eval_train 2 --batch_real 32 --trained_bs 64 --model_train_steps 2 --outer_loop",
        "--eval_interval 1000": "--eval_interval 100 --Iteration 2 --nclass 6 --phase 0 --size 64 "
        "--model_train_steps 1", "--batch_real 128": "--batch_real 4", "--batch_train 128": "--batch_train 8",
        "--cuda-to-cpu": "--cuda-to-cpu --threads 1"})
    run(text, box, {})
    cifar = box / "runs" / "idm-cifar10"
    assert json.loads((cifar / "bilp" / "level1.json").read_text())["kept_per_class"] == [24] * 10
    assert (cifar / "res_DM_CIFAR10_ConvNet_1ipc.pt").is_file()
    records = box / "runs" / "idm-imagenet" / "bilp"
    assert json.loads((records / "level1.json").read_text())["kept_per_class"] == [7] * 6
    assert (records / "level2.jsonl").read_text().count("\n") > 0
    assert (box / "runs" / "idm-report" / "report.md").is_file() and reverted(box, "idm")
