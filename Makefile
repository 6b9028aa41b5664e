# The two commands a user needs: `make demo` (set up + run the local quickstart)
# and `make test` (set up + run the whole test suite). Both create .venv if missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rarl-installed
PYTEST_ARGS ?=

.PHONY: setup test demo bench lint crd docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints-cpu.txt -e '.[trainer,operator,dev]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The quickstart, trained here in the foreground; a fresh run each time (its old checkpoints are removed).
demo: $(STAMP)
	rm -rf .rarl/runs/quickstart
	$(VENV)/bin/rarlctl run -f examples/quickstart.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk operator trainer tests bench

crd: $(STAMP)
	$(VENV)/bin/rarlctl crd > charts/rarl-operator/crds/rarljobs.rarl.dev.yaml

docs: $(STAMP)
	$(PY) -m rarl.api.docs README.md

# Benchmarks (not tests): each appends its figures to bench/RESULTS.md.
bench: $(STAMP)
	$(PY) bench/bench_core.py --append
	$(PY) bench/bench_storage.py --size-mb 256
	$(PY) bench/bench_operator.py

clean:
	rm -rf $(VENV) build *.egg-info
