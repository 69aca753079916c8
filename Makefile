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

# make bench REAL_DIR=path: also the benchmarks that need your own FER2013 and FER+ votes
bench: install
	set -e; for b in benchmarks/bench_*.py; do \
	  case $$b in \
	    *bench_label_issues.py) if [ -n "$(REAL_DIR)" ]; then python $$b "$(REAL_DIR)"; \
	                            else echo "$$b skipped: it needs REAL_DIR=<raw folder with your FER2013>"; fi ;; \
	    *) python $$b ;; \
	  esac; done
