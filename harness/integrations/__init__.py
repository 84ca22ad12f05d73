"""Glue to other pytest plugins (pytest-benchmark, pytest-xdist), registered only when they are present."""
