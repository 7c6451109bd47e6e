"""pytest in this checkout (`npm run test:python`, or `python3 -m pytest clients/python/tests examples/python`): the
iommud package of clients/python/src when it is not installed (an installed one registers its plugin itself), and
its plugin, for every test folder below. One place for that setup instead of a copy in each folder's conftest."""

import os
import sys

try:
    import iommud  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "clients", "python", "src"))

pytest_plugins = ["iommud.pytest_plugin"]
