# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

.PHONY: install demo test lint
install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/llamaswap sim scenarios/default.yaml

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy llamaswap sim

test: $(BIN)/.installed lint
	$(BIN)/pytest --cov --cov-report=term:skip-covered --cov-report=
	$(BIN)/coverage report --include='llamaswap/core/*' --fail-under=90
