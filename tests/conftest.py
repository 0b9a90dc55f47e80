"""Shared test set-up: a byte vocabulary, quiet TensorFlow, a private count cache, and
fresh skipped-row counts."""

import os
from pathlib import Path

os.environ.setdefault("FLAN_JAX_VOCAB", "byte")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FLAN_JAX_COMPILATION_CACHE", "")  # tests compile afresh

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _count_cache(tmp_path, monkeypatch):
    from flan_jax import bad_rows

    monkeypatch.setenv("FLAN_JAX_CACHE_DIR", str(tmp_path / "cache"))
    bad_rows.reset()
