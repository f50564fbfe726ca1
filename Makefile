# Two commands do all the set-up: `make run` and `make test`.
# Each creates or refreshes the local virtualenv (.venv) from pyproject.toml first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mentorbot run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every script in bench/ but the shared helpers, the year-long history and the
# 5,000-learner many-workspaces run (run those on their own: each takes about ten
# minutes), one after another. Each prints
# its figures and must exit 0 and end with one `RESULT name=<bench> key=value ...` line;
# the whole run is meant to stay under 10 minutes on a 2-core machine.
bench: SHELL := /bin/bash
bench: $(STAMP)
	@set -o pipefail; began=$$SECONDS; out=$$(mktemp); trap 'rm -f $$out' EXIT; \
	for script in bench/*.py; do \
		case $$script in bench/_*|bench/common.py|bench/history.py|bench/many_workspaces.py) continue;; esac; \
		echo "== $$script"; \
		PYTHONUNBUFFERED=1 $(BIN)/python $$script | tee $$out || exit 1; \
		tail -n 1 $$out | grep -q '^RESULT name=' || { echo "$$script: no RESULT line at the end"; exit 1; }; \
	done; \
	echo "== make bench took $$((SECONDS - began)) s"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
