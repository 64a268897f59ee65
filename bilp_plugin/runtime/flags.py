"""The ``--bilp`` flags a patched upstream adds to its own parser (``runtime.add_arguments``), and the
:class:`~bilp_plugin.config.BiLPConfig` they fill, both from the one table of flags
(:data:`bilp_plugin.config.FLAGS`).

Every value is checked when the upstream parses its command line, before it loads data or creates a folder: each
flag by its argparse type, ``--bilp`` itself by the adapter's ``check_script`` hook (does this script run BiLP at
all?), then, with ``--bilp``, the flags together (:func:`check_parsed`: the config, the adapter's ``check_run``
when the patch names its upstream, the score file, the record folder), and flags that do nothing in the given
combination get one warning line (level-2 flags with ``--bilp-beta 0``, a score file with ``--bilp-criterion
random``). Without ``--bilp`` nothing is checked, and a ``--bilp-*`` flag given anyway prints one warning line on
stderr (no random number, no clock, no file).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bilp_plugin.config import FLAGS, BiLPConfig
from bilp_plugin.errors import BiLPError
from bilp_plugin.logs import say
from bilp_plugin.manager import get_manager
from bilp_plugin.method import scorefile
from bilp_plugin.runtime.record import check_out

class EnableBiLP(argparse.Action):
    """``--bilp`` (a ``store_true`` flag) that first asks the ``check_script`` hook whether the running script of
    ``upstream`` runs BiLP at all; a refusal is one ``bilp: error:`` line and exit status 2, before any work."""

    def __init__(self, option_strings: list[str], dest: str, upstream: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)
        self.upstream = upstream

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        try:
            get_manager().run_hooks(self.upstream).check_script(Path(sys.argv[0]).name)
        except BiLPError as err:
            parser.exit(2, f"bilp: error: {err}\n")
        setattr(namespace, self.dest, True)


def add_arguments(parser: argparse.ArgumentParser, upstream: str | None = None, level2: bool = True) -> None:
    """Add ``--bilp`` and its ``--bilp-*`` flags to an upstream's parser, checked when it parses (module
    docstring). All values are plain JSON types. With ``upstream``, ``--bilp`` is checked by the ``check_script``
    hook as it is parsed (:class:`EnableBiLP`). With ``level2=False`` (a script whose loss sees no real batch,
    MTT's) the level-2 flags still parse, so the adapter's refusal can name them, but ``--help`` hides them and
    says why."""
    defaults = BiLPConfig()
    title = "BiLP (bi-level data pruning)" if level2 else "BiLP (bi-level data pruning): level 1 only in this script"
    g = parser.add_argument_group(title, None if level2 else (
        "this script's loss sees no real batch, so level 2 (ITE pruning of real batches: --bilp-beta and its "
        "flags) is refused here; level 1 prunes the real set before it is used"))
    enable: Any = "store_true" if upstream is None else functools.partial(EnableBiLP, upstream=upstream)
    g.add_argument("--bilp", action=enable, help="enable BiLP; without it nothing changes")
    for flag in FLAGS:
        g.add_argument(flag.option, dest=flag.dest, type=flag.argtype(), choices=flag.choices,
                       default=getattr(defaults, flag.field),
                       help=argparse.SUPPRESS if flag.level2 and not level2 else flag.help)
    parse_known_args = parser.parse_known_args
    parsed_before: list[list[str]] = []

    def parse_and_check(args: Sequence[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = parse_known_args(args, namespace)
        argv = sys.argv[1:] if args is None else list(args)
        # a script that parses one command line twice (DATM.py: --cfg first, then the config's arguments) is
        # checked each time, with what it knows by then, and warned once
        check_parsed(parser, parsed, argv, upstream, warn=argv not in parsed_before)
        parsed_before.append(argv)
        return parsed, extras

    parser.parse_known_args = parse_and_check  # type: ignore[method-assign]  # parse_args calls it


def given_flags(argv: Sequence[str]) -> list[str]:
    """The ``--bilp-*`` flags on a command line, in order, each once."""
    names = [str(a).split("=", 1)[0] for a in argv if str(a).startswith("--bilp-")]
    return list(dict.fromkeys(names))


def check_parsed(parser: argparse.ArgumentParser, args: Any, argv: Sequence[str], upstream: str | None = None,
                 warn: bool = True) -> None:
    """The flags together, right after parsing: without ``--bilp``, one warning line when ``--bilp-*`` flags were
    given; with it, the config, the adapter's ``check_run`` (with ``upstream``), the score file and the record
    folder, refused with argparse's one-line error, then one warning line for flags that do nothing here
    (warnings only with ``warn``)."""
    if not getattr(args, "bilp", False):
        ignored = given_flags(argv)
        if ignored and warn:
            say(f"warning: {', '.join(ignored)} given without --bilp: ignored (add --bilp to enable BiLP)")
        return
    try:
        config = from_args(args)
        if upstream is not None:  # the adapter's refusals, before the script loads data or makes a folder
            get_manager().run_hooks(upstream).check_run(args, config)
        if config.scores is not None:
            scorefile.load(config.scores)
        check_out(config.out)
    except BiLPError as err:
        parser.error(str(err))
    idle = idle_flags(config, given_flags(argv))
    if idle and warn:
        say(f"warning: {'; '.join(idle)}: ignored")


def idle_flags(config: BiLPConfig, given: Sequence[str]) -> list[str]:
    """Each group of given flags that does nothing with ``config``, in words (empty: all of them act)."""
    groups = []
    if not config.level2:
        options = {f.option for f in FLAGS if f.level2 and f.field != "beta"}
        level2 = [option for option in given if option in options]
        if level2:
            groups.append(f"{', '.join(level2)} {'does' if len(level2) == 1 else 'do'} nothing with --bilp-beta 0 "
                          "(level 2 off)")
    if config.criterion == "random":
        scoring = [option for option in given if option in ("--bilp-scores", "--bilp-score-epochs")]
        if scoring:
            groups.append(f"{', '.join(scoring)} {'does' if len(scoring) == 1 else 'do'} nothing with "
                          "--bilp-criterion random (no scores are read)")
    return groups


def from_args(args: argparse.Namespace | Any) -> BiLPConfig:
    """The :class:`BiLPConfig` of a parsed upstream namespace (``args.bilp_*``)."""
    return BiLPConfig(**{flag.field: getattr(args, flag.dest) for flag in FLAGS})
