"""Malformed input and fuzzing: the case catalogue with its known runtime issues, and the prober that
runs it in a worker process."""
