"""A stand-in for the one piece of ``torchnet`` IDM uses (``torchnet.meter.ClassErrorMeter``).

The real ``torchnet`` pulls ``visdom``, which does not build with current setuptools. Put ``tests/stubs`` on
``PYTHONPATH`` to run IDM's scripts without it. The meter's values feed IDM's synthetic-CE weight, so the
stand-in reproduces torchnet 0.0.4's arithmetic (tested in ``tests/test_adapter_idm.py``).
"""

from torchnet import meter

__all__ = ["meter"]
