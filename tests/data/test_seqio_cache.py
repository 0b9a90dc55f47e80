"""seqio's own Beam caching job over catalog tasks, and training reading its output.

Runs `python -m seqio.scripts.cache_tasks_main` (Beam's Python direct runner, in-process)
on two small catalog tasks, one over a generated source and one over JSONL files, checks
the files seqio writes, then reads them back with `use_cached=True` and checks that they
hold exactly what the uncached pipeline renders and tokenizes, without the raw source
being read.

The runner is named `FnApiRunner`: it is what Beam's `DirectRunner` runs a batch
pipeline on, but `DirectRunner` first tries to download the Go "Prism" runner binary
from the internet and only falls back to `FnApiRunner` when that fails.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import seqio

from flan_jax.data.datasource import FlanDataSource
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.training import pipeline

from conftest import FIXTURES

# A generated task small enough for a quick Beam run (the demo tasks have 2,400 examples).
PARITY_YAML = """
tasks:
  - name: cachetest_parity
    collection: cachetest
    source:
      generated: flan_jax.data.demo.generators:parity
      splits: {train: 48, validation: 16, test: 16}
    parser:
      fields: [question, answer, options, rationale]
    templates:
      opt:
        - {input: "{question}\\n{options_}", target: "{answer}"}
        - {input: "Number question: {question}\\n{options_}", target: "{answer}"}
    few_shot:
      k: 2
      patterns:
        - {input_prefix: "Q: ", target_prefix: "A: ", x_y_sep: "\\n", example_sep: "\\n\\n"}
    metrics: [accuracy]
mixtures:
  - {name: cachetest_mix, tasks: [cachetest_parity_fs_opt, toy_add_zs_opt]}
"""
TASKS = ("cachetest_parity_fs_opt", "toy_add_zs_opt")
NUM_SHARDS = 2
LENGTHS = {"inputs": 512, "targets": 32}  # longer than any example here: nothing trimmed


@pytest.fixture(scope="module")
def catalog_dirs(tmp_path_factory) -> list[Path]:
    extra = tmp_path_factory.mktemp("cachetest_catalog")
    (extra / "parity.yaml").write_text(PARITY_YAML)
    dirs = [FIXTURES / "toy", extra]
    register_catalog(load_catalog(dirs))
    return dirs


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory, catalog_dirs) -> Path:
    if importlib.util.find_spec("apache_beam") is None:
        pytest.fail("apache-beam is not installed; it is pinned in setup.cfg's test extra "
                    "(run `make install`)")
    out = tmp_path_factory.mktemp("seqio_cache")
    env = {**os.environ, "FLAN_JAX_VOCAB": "byte", "TF_CPP_MIN_LOG_LEVEL": "2",
           "FLAN_JAX_TASK_PATHS": os.pathsep.join(map(str, catalog_dirs)),
           "FLAN_JAX_CACHE_DIR": str(tmp_path_factory.mktemp("counts"))}
    cmd = [sys.executable, "-m", "seqio.scripts.cache_tasks_main",
           "--module_import=flan_jax.catalog", f"--tasks={','.join(TASKS)}",
           f"--output_cache_dir={out}", f"--min_shards={NUM_SHARDS}",
           "--pipeline_options=--runner=FnApiRunner", "--alsologtostderr"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


@pytest.fixture(scope="module")
def cached(cache_dir):
    """seqio looks in `cache_dir` for the tasks' caches; undone afterwards."""
    before = seqio.get_global_cache_dirs()
    seqio.add_global_cache_dirs([str(cache_dir)])
    yield cache_dir
    seqio.set_global_cache_dirs(before)
    for name in TASKS:
        seqio.get_mixture_or_task(name)._cache_dir = None


def _refuse_raw_reads(self, *args, **kwargs):
    """Stands in for FlanDataSource.get_dataset: reading from the cache must not call it."""
    raise AssertionError(f"{self.task_name}: read its source instead of the cache")


def _count(name: str, split: str) -> int:
    task = seqio.get_mixture_or_task(name)
    return sum(1 for _ in task.get_dataset(None, split=split, shuffle=False))


def test_cache_job_writes_seqio_cache_files(cache_dir):
    for name in TASKS:
        task_dir = cache_dir / seqio.get_task_dir_from_name(name)
        assert (task_dir / "COMPLETED").exists(), name
        splits = seqio.get_mixture_or_task(name).splits
        assert sorted(p.name for p in task_dir.glob("info.*.json")) == sorted(
            f"info.{s}.json" for s in splits)
        for split in splits:
            count = _count(name, split)
            info = json.loads(Path(seqio.get_cached_info_path(str(task_dir), split)).read_text())
            assert info["num_shards"] == NUM_SHARDS
            assert info["features"]["inputs"] == {"dtype": "int32", "shape": [None]}
            assert info["features"]["targets"] == {"dtype": "int32", "shape": [None]}
            assert info["features"]["_task_name"]["dtype"] == "string"
            stats = json.loads(Path(seqio.get_cached_stats_path(str(task_dir), split)).read_text())
            assert stats["examples"] == count, (name, split)
            assert stats["inputs_tokens"] > 0 and stats["targets_tokens"] > 0
            prefix = Path(seqio.get_cached_tfrecord_prefix(str(task_dir), split))
            shards = sorted(p.name for p in task_dir.glob(f"{prefix.name}-*"))
            assert shards == [f"{prefix.name}-{i:05d}-of-{NUM_SHARDS:05d}"
                              for i in range(NUM_SHARDS)]


def _by_index(ds) -> dict[int, dict]:
    rows = {int(r["_example_index"]): r for r in ds.as_numpy_iterator()}
    return dict(sorted(rows.items()))


def test_cached_examples_equal_uncached(cached, monkeypatch):
    for name in TASKS:
        task = seqio.get_mixture_or_task(name)
        assert task.cache_dir == str(cached / seqio.get_task_dir_from_name(name))
        for split in task.splits:
            fresh = _by_index(task.get_dataset(None, split=split, shuffle=False))
            with monkeypatch.context() as m:
                m.setattr(FlanDataSource, "get_dataset", _refuse_raw_reads)
                from_cache = _by_index(task.get_dataset(None, split=split, shuffle=False,
                                                        use_cached=True))
            assert fresh and fresh.keys() == from_cache.keys(), (name, split)
            for index, row in fresh.items():
                other = from_cache[index]
                assert row.keys() == other.keys(), (name, split, index)
                for key, value in row.items():
                    np.testing.assert_array_equal(value, other[key], err_msg=f"{name} {split} "
                                                                             f"#{index} {key}")


def _rows(batches) -> list[tuple[bytes, bytes]]:
    return sorted((r_in.tobytes(), r_out.tobytes()) for b in batches
                  for r_in, r_out in zip(b["encoder_input_tokens"], b["decoder_target_tokens"]))


def test_training_data_reads_the_cache(cached, monkeypatch):
    name = TASKS[0]
    make = lambda use_cached: pipeline.make_dataset(  # noqa: E731
        name, LENGTHS, batch_size=4, shuffle=False, num_epochs=1, pack=False,
        use_cached=use_cached).as_numpy_iterator()
    fresh = _rows(make(False))
    monkeypatch.setattr(FlanDataSource, "get_dataset", _refuse_raw_reads)
    from_cache = _rows(make(True))
    assert len(fresh) == 48 and from_cache == fresh  # 48 train examples, 12 full batches
    batches = pipeline.eval_batches(name, LENGTHS, 4, 6, use_cached=True)
    assert len(batches) == 6 and batches[0]["encoder_input_tokens"].shape == (4, 512)
    # A catalog mixture of cached tasks, as the trainer reads it (packed, endless).
    it = pipeline.train_iterator("cachetest_mix", LENGTHS, 4, seed=3,
                                      shuffle_buffer_size=16, use_cached=True)
    batch = next(it)
    assert batch["encoder_input_tokens"].shape == (4, 512) and it.state() == {
        "batches_consumed": 1}
