# flan_jax developer entry points. Every target is idempotent: the virtualenv is
# (re)built only when setup.cfg, pyproject.toml or requirements.lock change.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint pytest demo bench clean

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

demo: $(STAMP)
	$(PY) -m flan_jax.tasks stats demo_submix
	$(PY) -m flan_jax.tasks preview demo_submix -n 4

bench: $(STAMP)
	$(PY) benchmarks/data_pipeline.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
