"""BiLP, bi-level data pruning for dataset distillation, as a plugin for existing distillation repos.

Write a plugin by implementing any of the hooks in :mod:`bilp_plugin.hookspecs`::

    from bilp_plugin import hookimpl

    @hookimpl(tryfirst=True)
    def filter_batch(norms, cls, state, config):
        ...  # return a Selection, or None to defer to the next implementation

and expose the module under the ``bilp`` entry-point group in your package's metadata::

    [project.entry-points.bilp]
    my_rule = "my_package.my_rule"

``bilp plugins`` lists what is registered and which hooks each plugin implements.
"""

import pluggy

__version__ = "0.1.0"

PROJECT = "bilp"
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["hookimpl", "__version__", "PROJECT"]
