"""The client's own tests: the plugin from this checkout when iommud is not installed (no PYTHONPATH needed),
and pytester for the plugin's tests."""

import os
import sys

try:
    import iommud  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

pytest_plugins = ["pytester", "iommud.pytest_plugin"]
