# Two commands on a fresh machine: `make run` (demo) and `make test` (whole suite).
# Both create .venv and install the pinned dependencies (requirements.lock).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint typecheck bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# `make run UNDERSTAFF=5m+30m`: the simulated center is short-staffed for 30
# minutes from 5 minutes in, and the answer-rate alerts fire (docs/alerting.md).
run: $(STAMP)
	$(BIN)/callkpi dev --config deploy/config/callkpi.example.yaml --simulate \
		$(if $(UNDERSTAFF),--understaff $(UNDERSTAFF))

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench

typecheck: $(STAMP)
	$(BIN)/mypy services

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.pipeline

clean:
	rm -rf $(VENV) .callkpi .pytest_cache .mypy_cache .ruff_cache
