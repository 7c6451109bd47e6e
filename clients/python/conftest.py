"""The client's own tests: pytester for the plugin's tests (the package and its plugin: conftest.py at the top of
the checkout)."""

pytest_plugins = ["pytester"]
