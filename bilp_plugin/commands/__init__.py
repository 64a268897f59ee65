"""The ``bilp`` subcommands, one module each: its parser (``add_parser``) beside its handler (``run``).
:mod:`bilp_plugin.cli` assembles them in :data:`COMMANDS` order; flags several commands share are
:mod:`bilp_plugin.commands.flags`."""
