"""``torchnet`` for the bare IDM scripts, which import it unconditionally: the adapter's copy of its meter.

Only the bare-upstream baselines of the tests put ``tests/stubs`` on ``PYTHONPATH``; the patched scripts (IDM's
compat patch) fall back to ``bilp_adapters.idm.torchnet`` by themselves.
"""

from bilp_adapters.idm.torchnet import meter

__all__ = ["meter"]
