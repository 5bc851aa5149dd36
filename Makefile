# Fresh machine: `make demo` or `make test`. Both build .venv once and reuse it.
# SPU 0.9.5 only has wheels for CPython 3.10/3.11, so we look for those interpreters.
PYTHON ?= $(shell for p in python3.11 python3.10 python3; do \
	  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not ((3,10) <= sys.version_info[:2] < (3,12)))' 2>/dev/null \
	  && { command -v $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.raympc-installed
PYTEST_ARGS ?=

.PHONY: demo test bench venv clean-venv check-python

check-python:
	@if [ -z "$(PYTHON)" ]; then \
	  echo "raympc needs CPython 3.10 or 3.11: SPU 0.9.5 publishes no wheels for 3.12+."; \
	  echo "Install Python 3.11 (pyenv, uv python install 3.11, or your distribution) and run"; \
	  echo "  make PYTHON=/path/to/python3.11 demo"; exit 2; fi

$(STAMP): pyproject.toml requirements.lock | check-python
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23.2"
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/raympc demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/raympc bench runtime

clean-venv:
	rm -rf $(VENV)
