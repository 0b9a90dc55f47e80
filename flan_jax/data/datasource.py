"""The seqio DataSource of one task in one template style.

It reads the raw source once, parses and renders each example in Python, and
hands tf.data batches of finished `inputs`/`targets` strings plus metadata
(`_task_name`, `_task_source`, `_template_type`, `_template_idx`,
`_example_index`). Tokenization stays in seqio's own preprocessors.

Malformed rows and rows with an empty input or target are skipped and counted
(`flan_jax.data.bad_rows`). A data error inside the tf.data pipeline reaches its consumer as a
TensorFlow error wrapping a Python traceback; it is also logged as one paragraph, and
`pipeline_error` gives back the flan_jax error behind it.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
from collections.abc import Iterator
from typing import Any

import seqio
import tensorflow as tf

from flan_jax.data import bad_rows
from flan_jax.data.parsers import make_parser
from flan_jax.data.schema import TaskSpec
from flan_jax.data.sources import Example, MalformedRow, Source, make_source
from flan_jax.data.templates import Renderer
from flan_jax.errors import DataFormatError, EmptyFieldError, FlanJaxError

log = logging.getLogger(__name__)

BATCH = 256
_SIGNATURE = {
    "inputs": tf.TensorSpec([None], tf.string),
    "targets": tf.TensorSpec([None], tf.string),
    "_template_idx": tf.TensorSpec([None], tf.int32),
    "_example_index": tf.TensorSpec([None], tf.int64),
}


class TaskData:
    """Source, parser and few-shot pool of one task, shared by all its styles."""

    def __init__(self, spec: TaskSpec):
        self.spec = spec
        self.source: Source = make_source(spec.source, spec.name, spec.file)

    @functools.cached_property
    def parse(self):
        return make_parser(self.spec.parser)

    def counter(self, split: str) -> bad_rows.RowCounter:
        """A counter for one pass over `split`, with this source's malformed-row limit."""
        return bad_rows.RowCounter(self.spec.name, split, self.source.describe(),
                                   bad_rows.max_malformed(self.spec.source.max_malformed))

    def examples(self, split: str, shard_index: int = 0, num_shards: int = 1,
                 counter: bad_rows.RowCounter | None = None) -> Iterator[tuple[int, Example]]:
        """Parsed (index, fields) pairs of one shard of a split; malformed and empty rows
        are skipped and counted in `counter` (a new one if None), which fails the pass
        past its limit."""
        counter = counter or self.counter(split)
        for index, raw in self.source.iter_split(split, shard_index, num_shards):
            counter.row()
            if isinstance(raw, MalformedRow):
                counter.skip_malformed(raw.where, raw.problem)
                continue
            try:
                fields = self.parse(raw)
            except EmptyFieldError as e:
                counter.skip_empty(_where(raw, split, index), str(e))
                continue
            except DataFormatError as e:
                counter.skip_malformed(_where(raw, split, index), str(e))
                continue
            yield index, fields
        counter.finish()

    @functools.cached_property
    def pool(self) -> list[tuple[int, Example]]:
        """Few-shot candidates: the first `pool_size` examples of the exemplar split."""
        few_shot = self.spec.few_shot
        if few_shot is None or few_shot.split not in self.source.splits:
            return []
        return list(itertools.islice(self.examples(few_shot.split), few_shot.pool_size))


def _where(raw: Example, split: str, index: int) -> str:
    """A row's location: its file and line when the source knows them, else its index."""
    return getattr(raw, "where", None) or f"{split} example {index}"


class FlanDataSource(seqio.DataSource):
    """Rendered examples of `data.spec` in one style; shards by example index."""

    def __init__(self, data: TaskData, style: str, vocabulary: seqio.Vocabulary,
                 seed: int | None = None, unseen: bool = False):
        self.data, self.style, self.unseen = data, style, unseen
        counts = {s: data.spec.num_examples[s] for s in data.source.splits
                  if s in data.spec.num_examples}
        super().__init__(splits=data.source.splits,
                         num_input_examples=counts if len(counts) == len(data.source.splits)
                         else None)
        self.renderer = Renderer(data.spec, style, seed=seed,
                                 token_length=lambda text: len(vocabulary.encode(text)),
                                 unseen=unseen)

    @property
    def task_name(self) -> str:
        return self.renderer.task_name

    @property
    def supports_arbitrary_sharding(self) -> bool:
        return True

    def list_shards(self, split: str) -> list[str]:
        return [split]

    def rendered(self, split: str, shard_index: int = 0, num_shards: int = 1, epoch: int = 0,
                 counter: bad_rows.RowCounter | None = None) -> Iterator[dict[str, Any]]:
        """Rendered examples as Python dicts (what the tf.data pipeline carries); one
        whose rendered inputs or targets are empty is skipped, as FLAN does."""
        pool = self.data.pool if self.renderer.few_shot else ()
        in_pool = self.renderer.few_shot is not None and split == self.renderer.few_shot.split
        counter = counter or self.data.counter(split)
        for index, fields in self.data.examples(split, shard_index, num_shards, counter):
            out = self.renderer.render(fields, index, epoch, pool, query_in_pool=in_pool)
            empty = [k for k, text in (("inputs", out.inputs), ("targets", out.targets))
                     if not text.strip()]
            if empty:
                counter.skip_empty(f"{split} example {index}",
                                   f"the rendered {' and '.join(empty)} would be empty")
                continue
            yield {"inputs": out.inputs, "targets": out.targets,
                   "_template_idx": out.template_idx, "_example_index": index,
                   "options": fields.get("options")}

    def get_dataset(self, split: str = "train", shuffle: bool = True, seed: int | None = None,
                    shard_info: seqio.ShardInfo | None = None, *, sequence_length=None,
                    use_cached: bool = False, num_epochs: int | None = 1) -> tf.data.Dataset:
        del shuffle, seed, sequence_length, use_cached, num_epochs  # order is canonical
        self.data.source.require_split(split)
        shard = (shard_info.index, shard_info.num_shards) if shard_info else (0, 1)
        epochs = itertools.count()

        def batches():
            try:
                rows = self.rendered(split, *shard, epoch=next(epochs))
                while chunk := list(itertools.islice(rows, BATCH)):
                    yield {key: [row[key] for row in chunk] for key in _SIGNATURE}
            except FlanJaxError as e:
                _record(e, self.task_name)
                raise

        constants = {"_task_name": self.task_name,
                     "_task_source": self.data.source.describe(),
                     "_template_type": self.style}

        def add_metadata(ex):
            return {**ex, **{k: tf.constant(v) for k, v in constants.items()}}

        ds = tf.data.Dataset.from_generator(batches, output_signature=_SIGNATURE)
        return ds.unbatch().map(add_metadata)


_ERRORS_LOCK = threading.Lock()
_ERRORS: list[FlanJaxError] = []
_translators = 0  # `as_numpy` iterations running: they raise the error themselves


def _record(error: FlanJaxError, task_name: str) -> None:
    """Keeps an error raised inside a tf.data generator and, unless an `as_numpy` consumer
    will raise it, logs it as one paragraph (tf.data hands its consumer, e.g. t5x, a
    TensorFlow error wrapping the whole traceback)."""
    with _ERRORS_LOCK:
        _ERRORS.append(error)
        del _ERRORS[:-10]
        quiet = _translators > 0
    if not quiet:
        log.error("Data error in task %s: %s", task_name, error)


def pipeline_error(error: Exception) -> FlanJaxError | None:
    """The flan_jax error behind `error`, a TensorFlow error from iterating a dataset whose
    generator failed; None if it came from elsewhere."""
    if isinstance(error, FlanJaxError):
        return error
    text = str(error)
    with _ERRORS_LOCK:
        return next((e for e in reversed(_ERRORS) if str(e) and str(e) in text), None)


def as_numpy(ds: tf.data.Dataset) -> Iterator[Any]:
    """`ds.as_numpy_iterator()`, raising the flan_jax error behind a failed generator (one
    paragraph naming task, row and field) instead of TensorFlow's wrapped traceback."""
    global _translators
    it = ds.as_numpy_iterator()
    with _ERRORS_LOCK:
        _translators += 1
    try:
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except tf.errors.OpError as e:
                cause = pipeline_error(e)
                if cause is None:
                    raise
                raise cause from None
            yield item
    finally:
        with _ERRORS_LOCK:
            _translators -= 1


def make_task(data: TaskData, style: str, vocabulary: seqio.Vocabulary,
              metric_fns: list, seed: int | None = None, unseen: bool = False) -> seqio.Task:
    """The seqio Task for one style (`unseen`: of its held-out templates): render,
    tokenize, cache point, append EOS."""
    features = {k: seqio.Feature(vocabulary, add_eos=True) for k in ("inputs", "targets")}
    return seqio.Task(
        name=data.spec.task_name(style, unseen),
        source=FlanDataSource(data, style, vocabulary, seed=seed, unseen=unseen),
        output_features=features,
        preprocessors=[seqio.preprocessors.tokenize, seqio.CacheDatasetPlaceholder(),
                       seqio.preprocessors.append_eos_after_trim],
        postprocess_fn=_strip,
        metric_fns=metric_fns,
    )


def _strip(text: str, example: Any = None, is_target: bool = False) -> str:
    del example, is_target
    return text.strip() if isinstance(text, str) else text
