"""The iommud plugin from this checkout when the package is not installed (an installed one registers itself)."""

import os
import sys

try:
    import iommud  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python", "src"))

pytest_plugins = ["iommud.pytest_plugin"]
