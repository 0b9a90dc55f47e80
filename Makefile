# flan_jax developer entry points. Every target is idempotent: the virtualenv is
# (re)built only when setup.cfg, pyproject.toml or requirements.lock change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint pytest demo demo-scaling bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check flan_jax tests benchmarks

pytest: $(STAMP)
	$(PY) -m pytest -q tests

test: lint pytest

# The demo: gin/runs/demo.gin on a CPU, gin/runs/demo_accelerator.gin when JAX sees a GPU/TPU.
demo: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m flan_jax.demo

# Task-count scaling: the demo trained on 1, 3 and all 9 training families (~30 min on 2 cores).
demo-scaling: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 $(PY) -m flan_jax.demo.scaling

bench: $(STAMP)
	$(PY) benchmarks/data_pipeline.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
