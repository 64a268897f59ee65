"""A copy of the one piece of ``torchnet`` IDM uses (``torchnet.meter.ClassErrorMeter``).

torchnet 0.0.4 cannot be installed on current Python: its logger imports ``visdom``, which no longer builds. IDM's
compat patch imports this package where ``import torchnet`` fails, so IDM's scripts run with the documented
install. The meter's values feed IDM's synthetic-CE weight, so the copy reproduces torchnet 0.0.4's arithmetic
(tested in ``tests/test_adapter_idm.py``).
"""

from bilp_adapters.idm.torchnet import meter

__all__ = ["meter"]
