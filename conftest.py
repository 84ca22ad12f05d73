"""Root conftest: the harness itself is loaded through its pytest11 entry point (see pyproject)."""

pytest_plugins = ["pytester"]
