"""The accuracy an upstream prints reaches its run record (``summary.json``) and ``bilp report``: each adapter's
``read_accuracy`` reads the upstream's own line (formatted here with the upstream's format strings), the record
taps ``sys.stdout`` only while it is open, and the report shows the printed accuracy where no host wrote one."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bilp_plugin import files, hookimpl
from bilp_plugin.config import BiLPConfig
from bilp_plugin.lab.report import write_report
from bilp_plugin.manager import PluginManager
from bilp_plugin.runtime import printed
from bilp_plugin.runtime.record import RunRecord

# DatasetCondensation main.py / main_DM.py (MTT's distill.py and IDM's IDM_cifar10.py print the first one too)
EVALUATE = "Evaluate %d random %s, mean = %.4f std = %.4f\n-------------------------"
RUN = "Run %d experiments, train on %s, evaluate %d random %s, mean  = %.2f%%  std = %.2f%%"
IDC = "Repeat {repeat} => Best, last acc: {best:.1f} {last:.1f}\n"  # IDC test.py's test_data


def test_each_upstreams_accuracy_line_is_read() -> None:
    assert printed.dc_family_accuracy((EVALUATE % (5, "ConvNet", 0.2612, 0.0041)).splitlines()[0]) == \
        {"mean": 0.2612, "std": 0.0041, "networks": 5, "final": False}
    final = printed.dc_family_accuracy(RUN % (2, "ConvNet", 10, "ConvNet", 26.12, 0.41))
    assert final is not None and final["final"] and final["networks"] == 10
    assert final["mean"] == pytest.approx(0.2612) and final["std"] == pytest.approx(0.0041)
    idc = printed.idc_accuracy(IDC.format(repeat=2, best=49.8, last=48.9).strip())
    assert idc is not None and idc["mean"] == pytest.approx(0.489) and idc["std"] is None and idc["networks"] == 3
    for line in ("real images channel 0, mean = 0.1307, std = 0.3015", "Evaluate 1 random ConvNet, mean = nan "
                 "std = nan", "iter = 0100, loss = 1.2345", "Repeat 0 => Best, last acc: nan nan"):
        assert printed.dc_family_accuracy(line) is None and printed.idc_accuracy(line) is None


@pytest.mark.parametrize(("adapter", "line", "mean"), [
    ("dc", RUN % (1, "ConvNet", 1, "ConvNet", 85.5, 0.0), 0.855),
    ("idm", (EVALUATE % (5, "ConvNet", 0.5, 0.01)).splitlines()[0], 0.5),
    ("mtt", (EVALUATE % (5, "ConvNet", 0.46, 0.01)).splitlines()[0], 0.46),
    ("idc", IDC.format(repeat=0, best=60.0, last=59.5).strip(), 0.595)])
def test_each_adapter_reads_its_upstreams_line(adapter: str, line: str, mean: float) -> None:
    hooks = PluginManager().run_hooks(adapter)
    assert hooks.reads_accuracy() and hooks.read_accuracy(line)["mean"] == pytest.approx(mean)
    assert hooks.read_accuracy("nothing to see") is None
    assert not PluginManager().run_hooks("builtin").reads_accuracy()  # no adapter answers: stdout is left alone


def _record(folder: Path, upstream: str, read: Any = None) -> RunRecord:
    return RunRecord(files.hold(folder, "--bilp-out"), BiLPConfig(), upstream, argparse.Namespace(), read)


def _close(record: RunRecord) -> dict:
    record.close()
    return json.loads((record.dir / "summary.json").read_text())


def test_the_record_keeps_what_the_upstream_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    record = _record(tmp_path / "run", "dc", printed.dc_family_accuracy)
    print(EVALUATE % (1, "ConvNet", 0.10, 0.0))  # iteration 0
    sys.stdout.write("Evaluate 2 random ConvNet, mean = 0.")  # a line in two writes
    sys.stdout.write("2500 std = 0.0100\n")
    print(RUN % (1, "ConvNet", 2, "ConvNet", 25.0, 1.0))
    print("after the run")
    summary = _close(record)
    assert sys.stdout is out and "mean = 0.2500" in out.getvalue() and "after the run" in out.getvalue()
    assert [e["mean"] for e in summary["evaluations"]] == pytest.approx([0.10, 0.25, 0.25])
    assert summary["accuracy"]["final"] and summary["accuracy"]["networks"] == 2
    print(EVALUATE % (9, "ConvNet", 0.9, 0.0))  # after the summary: not read any more
    assert len(json.loads((record.dir / "summary.json").read_text())["evaluations"]) == 3


def test_without_a_final_line_the_last_evaluation_counts(tmp_path: Path) -> None:
    record = _record(tmp_path / "run", "mtt", printed.dc_family_accuracy)
    for acc in (0.3, 0.4):
        print(EVALUATE % (5, "ConvNet", acc, 0.01))
    assert _close(record)["accuracy"]["mean"] == pytest.approx(0.4)
    plain = _record(tmp_path / "plain", "builtin")
    print(EVALUATE % (5, "ConvNet", 0.5, 0.01))
    assert _close(plain)["accuracy"] is None and _close(plain) == json.loads((plain.dir / "summary.json").read_text())


class Reader:
    """A shared plugin that reads a line no adapter knows."""

    @hookimpl
    def read_accuracy(self, upstream, line):  # noqa: ANN001, ANN201
        return {"mean": 0.75, "std": None, "networks": None, "final": True} if line == "ours: 75%" else None


def test_a_plugin_reads_its_own_line(tmp_path: Path) -> None:
    pm = PluginManager()
    pm.register(Reader(), "reader")
    hooks = pm.run_hooks("builtin")
    record = _record(tmp_path / "run", "builtin", hooks.read_accuracy)
    print("ours: 75%")
    assert _close(record)["accuracy"]["mean"] == 0.75


def test_the_report_shows_the_printed_accuracy(tmp_path: Path) -> None:
    record = _record(tmp_path / "runs" / "dm", "dc", printed.dc_family_accuracy)
    print(RUN % (1, "ConvNet", 1, "ConvNet", 85.5, 0.0))
    record.close()
    text = write_report([tmp_path / "runs"], tmp_path / "report").read_text()
    assert "| 85.5 ± 0.0 (printed, 1 networks) |" in text
