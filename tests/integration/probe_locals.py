"""Run an upstream script as ``bilp launch`` does and, when the script's function FUNC returns,
save some of its locals (dotted paths to tensors) with ``torch.save``: the tests' view of state a script never
writes out (MTT's final synthetic set, the tensors its expert trainloader reads).

    python probe_locals.py OUT.pt FUNC image_syn,syn_lr -- <bilp launch arguments>

Tracing reads the frame on return only; it draws no random numbers and changes no value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from bilp_plugin import cli


def _get(namespace: dict[str, Any], path: str) -> Any:
    head, *rest = path.split(".")
    value = namespace[head]
    for name in rest:
        value = getattr(value, name)
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


def main(argv: list[str]) -> None:
    out, func, paths, separator, *rest = argv
    assert separator == "--", "usage: probe_locals.py OUT FUNC PATH[,PATH] -- LAUNCH_ARGS"
    script = str(Path(cli.build_parser().parse_args(["launch", *rest]).script).resolve())

    def on_return(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return":
            try:
                torch.save({p: _get(frame.f_locals, p) for p in paths.split(",")}, out)
            except (KeyError, AttributeError):  # left through an exception before the locals existed
                pass
        return on_return

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        return on_return if code.co_name == func and code.co_filename == script else None

    sys.settrace(on_call)
    cli.main(["launch", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
