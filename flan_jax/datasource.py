"""The seqio DataSource of one task in one template style.

It reads the raw source once, parses and renders each example in Python, and
hands tf.data batches of finished `inputs`/`targets` strings plus metadata
(`_task_name`, `_task_source`, `_template_type`, `_template_idx`,
`_example_index`). Tokenization stays in seqio's own preprocessors.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import seqio
import tensorflow as tf

from flan_jax.errors import DataFormatError
from flan_jax.parsers import make_parser
from flan_jax.schema import TaskSpec
from flan_jax.sources import Example, Source, make_source
from flan_jax.templates import Renderer

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

    def examples(self, split: str, shard_index: int = 0,
                 num_shards: int = 1) -> Iterator[tuple[int, Example]]:
        """Parsed (index, fields) pairs of one shard of a split."""
        for index, raw in self.source.iter_split(split, shard_index, num_shards):
            try:
                yield index, self.parse(raw)
            except DataFormatError as e:
                raise DataFormatError(f"task {self.spec.name!r}, {split} example {index} "
                                      f"({self.source.describe()}): {e}") from None

    @functools.cached_property
    def pool(self) -> list[tuple[int, Example]]:
        """Few-shot candidates: the first `pool_size` examples of the exemplar split."""
        few_shot = self.spec.few_shot
        if few_shot is None or few_shot.split not in self.source.splits:
            return []
        return list(itertools.islice(self.examples(few_shot.split), few_shot.pool_size))


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

    def rendered(self, split: str, shard_index: int = 0, num_shards: int = 1,
                 epoch: int = 0) -> Iterator[dict[str, Any]]:
        """Rendered examples as Python dicts (what the tf.data pipeline carries)."""
        pool = self.data.pool if self.renderer.few_shot else ()
        in_pool = self.renderer.few_shot is not None and split == self.renderer.few_shot.split
        for index, fields in self.data.examples(split, shard_index, num_shards):
            out = self.renderer.render(fields, index, epoch, pool, query_in_pool=in_pool)
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
            rows = self.rendered(split, *shard, epoch=next(epochs))
            while chunk := list(itertools.islice(rows, BATCH)):
                yield {key: [row[key] for row in chunk] for key in _SIGNATURE}

        constants = {"_task_name": self.task_name,
                     "_task_source": self.data.source.describe(),
                     "_template_type": self.style}

        def add_metadata(ex):
            return {**ex, **{k: tf.constant(v) for k, v in constants.items()}}

        ds = tf.data.Dataset.from_generator(batches, output_signature=_SIGNATURE)
        return ds.unbatch().map(add_metadata)


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
