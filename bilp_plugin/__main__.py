"""``python -m bilp_plugin`` is ``bilp``."""

import sys

from bilp_plugin.cli import main

sys.exit(main())
