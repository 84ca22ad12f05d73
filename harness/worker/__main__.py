"""``python -m harness.worker --model PATH``: the worker process (see ``harness.worker.child``)."""

import sys

from harness.worker.child import main

sys.exit(main())
