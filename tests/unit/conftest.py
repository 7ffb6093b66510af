"""Make the bin/ commands importable for CLI tests."""

import sys

from ..conftest import BIN

if str(BIN) not in sys.path:
    sys.path.insert(0, str(BIN))
