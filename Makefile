# One entry point for people and CI. Everything a fresh machine needs is installed from here.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_HOME ?= $(CURDIR)/.demo-home

.PHONY: install static demo test lint format bench clean chromium test-tools screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# constraints.txt pins every package to the versions CI tested; pyproject.toml states the ranges.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The dashboard's browser libraries come from npm at build time (pinned by web/package-lock.json) and
# are served from the package's static folder: the dashboard never loads anything from a CDN.
VENDOR := src/tianmu/service/web/static/vendor
$(VENDOR)/.installed: web/package.json web/package-lock.json
	command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq npm)
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp web/node_modules/chart.js/dist/chart.umd.min.js web/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/
	cp web/node_modules/chart.js/LICENSE.md $(VENDOR)/chart.js.LICENSE.md
	cp web/node_modules/htmx.org/LICENSE $(VENDOR)/htmx.LICENSE
	touch $@

static: $(VENDOR)/.installed

install: $(STAMP) $(VENDOR)/.installed

demo: install
	rm -rf $(DEMO_HOME)
	TIANMU_HOME=$(DEMO_HOME) $(BIN)/tianmu kb import demo/kb
	TIANMU_HOME=$(DEMO_HOME) $(BIN)/tianmu kb status
	TIANMU_HOME=$(DEMO_HOME) $(BIN)/tianmu assess demo/target --format html --output demo-report.html --fail-on none
	@echo "HTML situation report: $(CURDIR)/demo-report.html"

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

# The browser tests drive Debian's Chromium (Playwright never downloads a browser here); a CJK font lets
# the Chinese dashboard render as text in the screenshots instead of empty boxes. The discovery tests run
# `--engine nmap` against nmap itself; the road's test counts the files `assess` opens with strace. None of
# these has a PyPI route.
CJK_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
test-tools:
	@(test -x /usr/bin/chromium && test -f $(CJK_FONT) && command -v nmap >/dev/null && command -v strace >/dev/null) || \
		(flock /tmp/apt.lock apt-get update -q && DEBIAN_FRONTEND=noninteractive flock /tmp/apt.lock \
		apt-get install -y -q chromium fonts-wqy-microhei nmap strace)
chromium: test-tools

# The dashboard screenshots in docs/screenshots, taken by the browser tests.
screenshots: install chromium
	TIANMU_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q -p no:cacheprovider tests/service/test_dashboard_browser.py

test: install lint test-tools
	$(BIN)/pytest -n 2 -q

# Every bench/bench_*.py, one after another (they measure; running two at once would skew both).
# A benchmark that compares against a peer tool (yara, clamscan, nmap, openssl) installs it itself.
bench: install
	@set -e; for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script; done

clean:
	rm -rf $(VENV) $(DEMO_HOME) demo-report.html web/node_modules $(VENDOR) .mypy_cache .ruff_cache .pytest_cache
