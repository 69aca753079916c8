# Two entry points do all the set-up on a fresh machine:
#   make demo   create the environment, then run the demo pipeline on generated data
#   make test   create the environment (and the browser the App test uses), then run the tests
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export PATH := $(BIN):$(PATH)
export FIFTYONE_DO_NOT_TRACK := true

.PHONY: demo test install browser bench

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

demo: install
	cd pipelines/demo && dvc repro

test: install browser
	pytest -n 2 --dist loadfile

bench: install
	for b in benchmarks/bench_*.py; do python $$b; done
