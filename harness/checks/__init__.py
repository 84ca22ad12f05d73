"""The checks behind the suites: case assertions, output format, quality, parity with the reference,
stability across compute paths, memory, input length, latency and the precision comparison."""
