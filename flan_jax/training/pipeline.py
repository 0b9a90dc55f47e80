"""seqio mixture → per-host numpy batches, resumable exactly.

The training pipeline is deterministic given (mixture, lengths, batch size, seed, host
shard): seqio shuffles and samples the mixture with that seed and packs with
`EncDecFeatureConverter(pack=True)`. The iterator counts the batches it has handed out;
that count is saved with each checkpoint (`state()`) and a restarted run rebuilds the
same pipeline and skips that many batches (`restore()`), so it sees exactly the batches
an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np
import seqio

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from flan_jax.data import bad_rows  # noqa: E402
from flan_jax.data.datasource import as_numpy  # noqa: E402
from flan_jax.data.registry import get_mixture_or_task  # noqa: E402

tf.config.set_visible_devices([], "GPU")  # tf.data only; JAX owns the accelerators


def task_names(mixture_or_task: str) -> set[str]:
    """The seqio tasks a mixture (or a single task) draws from."""
    found = get_mixture_or_task(mixture_or_task)
    return {t.name for t in found.tasks} if isinstance(found, seqio.Mixture) else {found.name}


def feature_converter(pack: bool = True) -> seqio.FeatureConverter:
    return seqio.EncDecFeatureConverter(pack=pack)


def make_dataset(mixture_or_task: str, feature_lengths: Mapping[str, int], batch_size: int, *,
                 split: str = "train", seed: int = 0, shuffle: bool = True,
                 num_epochs: int | None = None, pack: bool = True,
                 shard_info: seqio.ShardInfo | None = None,
                 shuffle_buffer_size: int | None = None,
                 use_cached: bool = False) -> tf.data.Dataset:
    """Batched, converted seqio dataset (drop_remainder) for this host.

    `shuffle_buffer_size=None` shuffles each task with seqio's own buffer (1,000 examples
    per task: a mixture of many tasks renders tens of thousands of examples before its
    first batch). A number instead reads each task in order, lets the seeded mixture
    sampling interleave them, and shuffles the packed rows with a buffer of that size:
    much faster to start, and just as deterministic.

    `use_cached=True` reads each task from the output of seqio's Beam cache job
    (`python -m seqio.scripts.cache_tasks_main`), found in the directories given to
    `seqio.add_global_cache_dirs`, instead of rendering and tokenizing on the fly.
    """
    task_shuffle = shuffle and shuffle_buffer_size is None
    get_mixture_or_task(mixture_or_task)  # an unknown name, with the closest ones
    ds = seqio.get_dataset(mixture_or_task, task_feature_lengths=dict(feature_lengths),
                           feature_converter=feature_converter(pack), dataset_split=split,
                           shuffle=task_shuffle, num_epochs=num_epochs, shard_info=shard_info,
                           seed=seed, verbose=False, use_cached=use_cached)
    if shuffle and shuffle_buffer_size:
        ds = ds.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=True)


class ResumableIterator:
    """Numpy batches of a deterministic dataset, with the count of batches consumed.

    With `report_path`, the rows skipped so far (`flan_jax.data.bad_rows`) are printed after
    the first batch and written there then and whenever `state()` is taken (at each
    checkpoint).
    """

    def __init__(self, make: callable, consumed: int = 0, report_path: str | None = None):
        self._make = make
        self.consumed = 0
        self._it: Iterator | None = None
        self._report_path, self._reported = report_path, False
        self.restore({"batches_consumed": consumed})

    def restore(self, state: Mapping[str, int]) -> None:
        self.consumed = int(state["batches_consumed"])
        ds = self._make()
        if self.consumed:
            ds = ds.skip(self.consumed)
        self._it = as_numpy(ds.prefetch(2))

    def state(self) -> dict[str, int]:
        self._write_report()
        return {"batches_consumed": self.consumed}

    def __iter__(self) -> ResumableIterator:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._it)
        self.consumed += 1
        if not self._reported:
            self._reported = True
            self._write_report()
            lines = bad_rows.summary()
            if lines:
                print("Rows skipped so far (malformed, or an empty input or target):\n  "
                      + "\n  ".join(lines), flush=True)
        return {k: v.astype(np.int32) for k, v in batch.items()}

    def _write_report(self) -> None:
        if self._report_path:
            bad_rows.write(self._report_path)


def train_iterator(mixture_or_task: str, feature_lengths: Mapping[str, int],
                   batch_size: int, *, seed: int = 0, pack: bool = True,
                   shard_info: seqio.ShardInfo | None = None, consumed: int = 0,
                   shuffle_buffer_size: int | None = None, use_cached: bool = False,
                   report_path: str | None = None) -> ResumableIterator:
    """Endless shuffled training batches of `batch_size` rows (this host's share); the
    skipped-row report goes to `report_path` (see `ResumableIterator`)."""
    return ResumableIterator(
        lambda: make_dataset(mixture_or_task, feature_lengths, batch_size, seed=seed,
                             pack=pack, shard_info=shard_info,
                             shuffle_buffer_size=shuffle_buffer_size,
                             use_cached=use_cached), consumed, report_path)


def eval_batches(mixture_or_task: str, feature_lengths: Mapping[str, int], batch_size: int,
                 num_batches: int, *, split: str = "validation", pack: bool = True,
                 shard_info: seqio.ShardInfo | None = None,
                 use_cached: bool = False) -> list[dict[str, np.ndarray]]:
    """The first `num_batches` batches of a split (repeated if it is shorter), read once."""
    ds = seqio.get_dataset(mixture_or_task, task_feature_lengths=dict(feature_lengths),
                           feature_converter=feature_converter(pack), dataset_split=split,
                           shuffle=False, num_epochs=None, shard_info=shard_info, seed=0,
                           verbose=False, use_cached=use_cached)
    ds = ds.batch(batch_size, drop_remainder=True).take(num_batches)
    return [{k: v.astype(np.int32) for k, v in b.items()} for b in as_numpy(ds)]
