"""Root conftest of this repository.

The harness itself is loaded through its pytest11 entry point (see pyproject.toml), so this file
must stay harmless: it is also picked up when an editable install runs the suites from elsewhere.
"""

collect_ignore = ["fixtures", "reports", "benchmarks"]
