# brainmets: two commands set everything up on a fresh machine.
#   make demo   - create the environment, install, run the pipeline on the synthetic demo cohort
#   make test   - create the environment, install, run the linters and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= brainmets-demo
DEMO_PATIENTS ?= 6
# Shared reference data (SRI24 atlas, standards, real test DICOM): ../shared when present.
BRAINMETS_SHARED ?= $(abspath ../shared)
export BRAINMETS_SHARED

.PHONY: all demo test lint install install-dev install-demo system-deps web benchmark clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,skullstrip]'
	touch $@

$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[demo]'
	touch $@

install: $(VENV)/.installed-demo
install-dev: $(VENV)/.installed-dev
install-demo: $(VENV)/.installed-demo

# System tools used by some tests (DICOM network peers dcmtk and Orthanc, DICOM validator,
# headless Chromium for the report). Best effort:
# installed with apt-get when missing and possible; the tests that need them say so and skip
# otherwise.
system-deps:
	@missing=""; \
	command -v storescu >/dev/null 2>&1 || missing="$$missing dcmtk"; \
	command -v dciodvfy >/dev/null 2>&1 || missing="$$missing dicom3tools"; \
	command -v Orthanc >/dev/null 2>&1 || missing="$$missing orthanc"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; tests needing them will skip"; \
	  else echo "note:$$missing not installed; tests needing them will skip"; fi; \
	fi

# The review app's browser code: NiiVue from npm (the committed lockfile), copied where the
# server serves it; nothing third-party is committed.
NIIVUE := src/brainmets/review/static/vendor/niivue.js
$(NIIVUE): web/package-lock.json web/package.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $@)
	cp web/node_modules/@niivue/niivue/dist/index.js $@
web: $(NIIVUE)

demo: install-demo web
	$(BIN)/brainmets demo $(DEMO_DIR) --patients $(DEMO_PATIENTS)
	@echo "Review the demo cases in the browser: $(BIN)/brainmets users add -w $(DEMO_DIR)/workspace YOU --role reviewer; $(BIN)/brainmets review -w $(DEMO_DIR)/workspace"

lint: install-dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/mypy src

test: install-dev system-deps web lint
	$(BIN)/pytest -q

benchmark: install-dev
	$(BIN)/python benchmarks/deid.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache web/node_modules $(dir $(NIIVUE))
