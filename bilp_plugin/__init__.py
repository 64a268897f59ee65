"""BiLP, bi-level data pruning for dataset distillation, as a plugin for existing distillation repos.

Write a plugin by implementing any of the hooks in :mod:`bilp_plugin.hookspecs`::

    from bilp_plugin import hookimpl

    @hookimpl(tryfirst=True)
    def filter_batch(norms, cls, state, config):
        ...  # return a Selection, or None to defer to the next implementation

and expose the module under the ``bilp`` entry-point group in your package's metadata::

    [project.entry-points.bilp]
    my_rule = "my_package.my_rule"

An adapter for another upstream is a module of hooks exposed under the ``bilp.adapters`` group, named after the
upstream (``docs/adapters.md``)::

    [project.entry-points."bilp.adapters"]
    my_upstream = "my_package.adapter"

``bilp plugins`` lists every plugin and adapter and the hooks each implements.

Layers (each imports only those above it): this package's core (``hookspecs``, ``manager``, ``config``,
``errors``, ``logs``, ``files``); ``method/`` (the algorithm: score files, scoring, level 1, the ITE, level 2);
``runtime/`` (the facade patched upstreams import, the run record); ``tools/`` (``bilp-apply``, the reproducible
launcher, data layouts); ``lab/`` (the built-in host, demo, sweep, report, datasets); ``commands/`` (one module per
command line, assembled by ``cli``).
"""

import pluggy

from bilp_plugin.hookspecs import PROJECT

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "__version__", "PROJECT"]
