# Two commands on a fresh machine: `make run` (demo) and `make test` (whole suite).
# Both create .venv and install the pinned dependencies (requirements.lock).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test chaos lint typecheck promtool compose-cli chromium wrk bench bench-stream bench-reads bench-recount bench-asterisk clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# `make run`: the demo; it first simulates history since the previous pay period
# began, so that period can be closed (docs/payroll.md).
# `make run UNDERSTAFF=5m+30m`: the simulated center is short-staffed for 30
# minutes from 5 minutes in, and the answer-rate alerts fire (docs/alerting.md).
# `make run RUSH=b00`: agent b00 rushes its calls (talk at 60% of its usual) in the
# history's last 3 days and live, against the weeks before (docs/qa.md).
run: $(STAMP)
	$(BIN)/callkpi dev --config deploy/config/callkpi.example.yaml --simulate \
		$(if $(UNDERSTAFF),--understaff $(UNDERSTAFF)) \
		$(foreach agent,$(RUSH),--rush $(agent))

lint: $(STAMP)
	$(BIN)/ruff check services tests bench
	$(BIN)/ruff format --check services tests bench
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy services tests bench

test: $(STAMP) lint typecheck promtool compose-cli chromium
	$(BIN)/python -m pytest -q

# The fault suite alone (it is part of `make test` too): SIGKILLs, Postgres and
# broker outages, against real processes; figures land in
# test-artifacts/chaos.jsonl (docs/operations.md#fault-suite).
chaos: $(STAMP)
	$(BIN)/python -m pytest -q tests/chaos

# $(call apt-best-effort,CHECK,PACKAGES,TIMEOUT_S,MESSAGE): unless CHECK succeeds,
# install Debian PACKAGES when running as root with apt; otherwise print MESSAGE.
# The tests that need these tools skip (or fall back) and say so.
apt-best-effort = @{ $(1); } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout $(3) apt-get install \
		-y -qq --no-install-recommends $(2)) >/dev/null 2>&1; } \
	|| echo "$(4)"

# promtool (in Debian's prometheus package) checks deploy/prometheus/rules.yml and
# runs its unit tests. Best effort: where it cannot be installed (not root, no
# apt), the test parses the rules with promql-parser instead, and says so.
promtool:
	$(call apt-best-effort,command -v promtool,prometheus,300,promtool not installed: the rules test will parse deploy/prometheus/rules.yml)

# `docker compose config` (or Debian's docker-compose) validates docker-compose.yml
# without a Docker engine. Best effort, as promtool: the test skips and says so.
compose-cli:
	$(call apt-best-effort,docker compose version || command -v docker-compose,docker-compose,300,docker-compose not installed: the compose test will skip its config check)

# Debian's Chromium for the wallboard's browser tests (Playwright drives it through
# executable_path; nothing is downloaded at test time), and a CJK font so team
# names such as 账务班组 render in the screenshots. Best effort, as promtool: where
# it cannot be installed the browser tests skip and say so.
chromium:
	$(call apt-best-effort,command -v chromium,chromium fonts-wqy-zenhei,600,chromium not installed: the wallboard browser tests will skip)

# Debian's wrk drives the window-read bench (bench/reads.py). Best effort, as
# promtool: without it that bench says so and measures nothing.
wrk:
	$(call apt-best-effort,command -v wrk,wrk,300,wrk not installed: the window-read bench will be skipped)

# Pipeline throughput and freshness (one worker process, then one per core on
# the same backlog in the same run),
# the wallboard feed with 500 clients, window reads under wrk, a month of a
# 1,000-agent center re-counted (~20 M events, about half an hour), and the
# Asterisk queue_log import of a 50-agent center's month (docs/architecture.md#performance).
bench: $(STAMP) wrk
	$(BIN)/python -m bench.pipeline --processes 1,$$(nproc)
	$(BIN)/python -m bench.stream
	$(BIN)/python -m bench.reads
	$(BIN)/python -m bench.recount
	$(BIN)/python -m bench.asterisk

bench-stream: $(STAMP)
	$(BIN)/python -m bench.stream

bench-reads: $(STAMP) wrk
	$(BIN)/python -m bench.reads

bench-recount: $(STAMP)
	$(BIN)/python -m bench.recount

bench-asterisk: $(STAMP)
	$(BIN)/python -m bench.asterisk

clean:
	rm -rf $(VENV) .callkpi .pytest_cache .mypy_cache .ruff_cache
