# faultflow — every entry point a person or CI uses. Each target installs what it needs itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: all venv shim test bench demo clean catalogue

all: shim

# One virtual environment for tests, benchmarks and the demo. The stamp carries a hash of
# pyproject.toml so a changed pin reinstalls.
venv: $(STAMP)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "faultflow: python3 (3.11+) is required: apt-get install python3 python3-venv" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip==25.3
	$(PY) -m pip install -q -e '.[workflows,test]'
	@rm -f $(VENV)/.installed-*; touch $@

# The shim's C table is generated from the XID catalogue (stdlib-only generator), then built with gcc alone.
catalogue:
	$(PYTHON) -m steps.shim_header --write shim/xid_table.h

shim: catalogue
	$(MAKE) -C shim

test: venv shim
	$(PY) -m pytest

bench: venv shim
	@set -e; for b in bench/bench_*.py; do $(PY) $$b; done

demo: venv shim
	$(PY) -m lab.shim_demo

clean:
	$(MAKE) -C shim clean
	rm -rf $(VENV) .pytest_cache
