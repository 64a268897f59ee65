"""The one table of ``--bilp-*`` flags (``bilp_plugin.config.FLAGS``): every config field has its flag and every flag
its field, the parser an upstream gets is the table, and what a host passes to a launched upstream parses back to
the config it came from."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from bilp_plugin.config import FLAGS, BiLPConfig, flag_args
from bilp_plugin.errors import BiLPError
from bilp_plugin.hosting import Point
from bilp_plugin.runtime import flags


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    flags.add_arguments(p)
    return p


def parse_only(argv: list[str]) -> argparse.Namespace:
    """The flags parsed by argparse alone (each by its type), without the checks of a run (its score file)."""
    return argparse.ArgumentParser.parse_known_args(parser(), argv)[0]


def test_every_config_field_has_one_flag_and_every_flag_a_field() -> None:
    fields = [f.name for f in dataclasses.fields(BiLPConfig)]
    table = [flag.field for flag in FLAGS]
    assert sorted(table) == sorted(set(table)), "a field with two flags"
    assert set(fields) - set(table) == set(), "config fields without a flag"
    assert set(table) - set(fields) == set(), "flags without a config field"


def test_the_upstreams_parser_is_the_table() -> None:
    options = {o for action in parser()._actions for o in action.option_strings if o.startswith("--bilp")}
    assert options == {"--bilp", *(flag.option for flag in FLAGS)}
    assert flags.from_args(parser().parse_args(["--bilp"])) == BiLPConfig()


def test_a_config_round_trips_through_the_flags_a_host_passes() -> None:
    config = BiLPConfig(alpha=0.3, criterion="stratum", stratum=4, scores="s.npz", score_epochs=2, beta=0.2,
                        side="small", rule="paper", eta=0.5, interval=3, stats="class", ite="taylor", min_keep=2,
                        seed=7, out="rec")
    assert all(getattr(config, f.name) != f.default for f in dataclasses.fields(BiLPConfig))  # every flag is tried
    assert flags.from_args(parse_only(flag_args(dataclasses.asdict(config)))) == config


def test_a_point_passes_its_settings_through_the_table() -> None:
    argv = Point("p", criterion="loss", alpha=0.5, beta=0.2, side="large", seed=3).bilp_flags("s.npz")
    config = flags.from_args(parse_only(argv))
    assert config == BiLPConfig(alpha=0.5, beta=0.2, side="large", seed=3, scores="s.npz")


@pytest.mark.parametrize("flag", FLAGS, ids=lambda f: f.option)
def test_each_flag_checks_its_value_at_parse_time_and_in_the_config(flag: object, capsys: pytest.CaptureFixture[str]
                                                                   ) -> None:
    bad = {"alpha": "1.5", "criterion": "best", "stratum": "11", "scores": " ", "score_epochs": "0", "beta": "-0.1",
           "side": "middle", "rule": "other", "eta": "0", "interval": "0", "stats": "none", "ite": "exactly",
           "min_keep": "0", "seed": "-1"}
    if flag.field not in bad:  # --bilp-out: any folder name; checked with the record folder (check_out)
        return
    with pytest.raises(SystemExit):
        parse_only([flag.option, bad[flag.field]])
    assert flag.option in capsys.readouterr().err
    with pytest.raises((BiLPError, ValueError)):
        BiLPConfig(**{flag.field: flag.convert(bad[flag.field])})
