"""``python -m harness``: the ``harness`` command where its console script is not on PATH (a venv not activated,
``.venv\\Scripts`` on Windows) or may belong to another interpreter (CI steps run ``python -m``)."""

import sys

from harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
