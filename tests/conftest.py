"""Shared by the project's own tests.

pytester's in-process runs drop the modules they imported when they end; a native extension module
cannot be imported again in the same process (onnx's aborts: "nanobind: refusing to add duplicate
key"). Imported once here, before any inner run, it stays.
"""

import onnx  # noqa: F401
