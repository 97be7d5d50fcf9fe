# make demo: virtualenv + vmrules + the example rules on the bundled data.
# make test: everything the tests need (Python packages, Debian's victoria-metrics, prometheus, alertmanager,
# postgresql, chromium), then the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_TO := 2026-11-01T00:00:00Z

.PHONY: demo test lint system-deps bench clean

$(VENV)/.run: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test: $(VENV)/.run
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.run
	rm -rf exports/demo exports/seed-layout
	$(BIN)/vmrules validate rules/
	$(BIN)/vmrules apply rules/ --datasource file:examples/data/node.jsonl --to $(DEMO_TO) --output-dir exports/demo
	$(BIN)/vmrules apply examples/seed-layout/ --datasource file:examples/data/node.jsonl --to $(DEMO_TO) \
		--output-dir exports/seed-layout
	@echo
	@echo "The exports went to:"
	@find exports/demo exports/seed-layout -type f ! -name '.*' ! -name '*-wal' ! -name '*-shm' | sort | sed 's/^/  /'

system-deps:
	@command -v victoria-metrics >/dev/null && command -v vmauth >/dev/null \
		&& command -v prometheus-alertmanager >/dev/null && command -v promtool >/dev/null \
		&& command -v chromium >/dev/null \
		&& { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || { \
		echo "installing Debian's victoria-metrics, prometheus (promtool), prometheus-alertmanager, postgresql" \
			"and chromium (the HTML report's test)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			victoria-metrics prometheus prometheus-alertmanager postgresql chromium >/dev/null; }

lint: $(VENV)/.test
	$(BIN)/ruff check vmrules tests bench examples
	$(BIN)/mypy

test: $(VENV)/.test system-deps lint
	$(BIN)/pytest -q

bench: $(VENV)/.test system-deps
	$(BIN)/python bench/validate_bench.py

clean:
	rm -rf $(VENV) exports build *.egg-info .pytest_cache .mypy_cache .ruff_cache
