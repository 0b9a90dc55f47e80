"""The T0-SF collection of Flan 2022: the 193 P3 prompts of the T0 training mixture
that do not overlap Flan 2021 (tasks/t0/p3_prompts.yaml).

Each P3 prompt ("subset" of bigscience/P3, e.g. `adversarial_qa_dbert_answer_the_following_q`)
is already a finished instruction: `inputs_pretokenized` is the prompt, `targets_pretokenized`
the answer and, for multiple choice, `answer_choices` the options. The token ids (`inputs`,
`targets`) are ignored: our own vocabulary tokenizes the text.

`P3Source` reads one prompt's split from a directory named by $FLAN_JAX_P3_DIR (or the
task's `source.data_dir`, relative to its YAML file). The prompt's folder is
`{dir}/data/{prompt}/` (a clone of bigscience/P3) or else `{dir}/{prompt}/`, and in it the
split is in the first of these forms that is present (only that form is read):

  tfrecord  `{split}.tfrecord-*` (P3 as published: `{split}.tfrecord-00000-of-00001`,
            uncompressed tf.train.Example records; `info.{split}.json` beside it is not needed)
  arrow     `{split}/*.arrow` (a `datasets` DatasetDict `save_to_disk` folder; read with pyarrow)
  parquet   `{split}.parquet`, `{split}-*.parquet`, `*-{split}.parquet` or `{split}/*.parquet`
            (exports, and the Hugging Face Hub's parquet conversion)
  jsonl     `{split}.jsonl` or `{split}.jsonl.gz` (one JSON object per line)

The `datasets` library itself is not needed (nor used): pyarrow and TensorFlow, both pinned,
read these files. A malformed file or record is reported with the file's path and the record's
number in it (counting from 0).
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator
from typing import Any

from flan_jax.data.sources import Example, FileSource, MalformedRow, Row, open_text, shard
from flan_jax.errors import DataFormatError, FlanJaxError

PROMPT, ANSWER, CHOICES = "inputs_pretokenized", "targets_pretokenized", "answer_choices"
ENV = "FLAN_JAX_P3_DIR"

# The 24 dataset groups of T0-SF and the P3 prefix of their prompt names.
GROUPS = {
    "adversarial_qa": "adversarial_qa_", "amazon_polarity": "amazon_polarity_",
    "app_reviews": "app_reviews_", "cos_e": "cos_e_v1.11_", "dbpedia_14": "dbpedia_14_",
    "dream": "dream_", "duorc_ParaphraseRC": "duorc_ParaphraseRC_",
    "duorc_SelfRC": "duorc_SelfRC_", "hotpotqa": "kilt_tasks_hotpotqa_", "qasc": "qasc_",
    "quail": "quail_", "quarel": "quarel_", "quartz": "quartz_", "quoref": "quoref_",
    "race_high": "race_high_", "race_middle": "race_middle_", "ropes": "ropes_",
    "sciq": "sciq_", "social_i_qa": "social_i_qa_", "web_questions": "web_questions_",
    "wiki_bio": "wiki_bio_", "wiki_hop": "wiki_hop_original_", "wiki_qa": "wiki_qa_",
    "wiqa": "wiqa_",
}

# Form -> file patterns of one split inside a prompt's folder, in the order they are tried.
FORMS = {
    "tfrecord": ("{split}.tfrecord-*", "{split}.tfrecord"),
    "arrow": ("{split}/*.arrow",),
    "parquet": ("{split}.parquet", "{split}-*.parquet", "*-{split}.parquet", "{split}/*.parquet"),
    "jsonl": ("{split}.jsonl", "{split}.jsonl.gz"),
}


def group_of(prompt: str) -> str:
    """The T0-SF dataset group of a P3 prompt name (KeyError if it belongs to none)."""
    for group, prefix in GROUPS.items():
        if prompt.startswith(prefix):
            return group
    raise KeyError(prompt)


# --- Parsers ---------------------------------------------------------------------------------

def _text(raw: Example, key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise DataFormatError(f"P3 record has no {key!r} text (it has: {', '.join(sorted(raw))})")
    return value


def parse(raw: Example) -> Example:
    """prompt (the P3 input as it is, minus surrounding whitespace; its own line breaks kept),
    answer, and no separate options: the prompt is open-ended or already lists its choices."""
    return {"prompt": _text(raw, PROMPT).strip(), "answer": _text(raw, ANSWER).strip(),
            "options": []}


def parse_separated(raw: Example) -> Example:
    """As `parse`, with the answer choices as options: for prompts that do not show them
    (Flan's "t0_multiple_choice_separated_options")."""
    out = parse(raw)
    choices = raw.get(CHOICES)
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise DataFormatError(f"P3 multiple-choice record needs a non-empty {CHOICES!r} list of "
                              f"strings, got {choices!r}")
    out["options"] = [c.strip() for c in choices]
    return out


# --- Reading the files -------------------------------------------------------------------------

def tfrecords(path: str) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file, read and checksummed by TensorFlow."""
    import tensorflow as tf

    count = 0
    try:
        for data in tf.data.TFRecordDataset(path).as_numpy_iterator():
            yield data
            count += 1
    except tf.errors.DataLossError as e:
        if "truncated" in str(e).lower():
            raise DataFormatError(f"{path}: record {count} is truncated (the file ends "
                                  "inside it)") from None
        raise DataFormatError(f"{path}: record {count} is corrupt: its checksum does not "
                              "match (is this a TFRecord file?)") from None


def _example_fields(data: bytes, path: str, index: int) -> Example:
    """The text fields of one serialized tf.train.Example."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.example import example_pb2

    try:
        features = example_pb2.Example.FromString(data).features.feature
    except DecodeError as e:
        raise DataFormatError(f"{path}: record {index} is not a tf.train.Example ({e})") from None
    out: Example = {}
    for key in (PROMPT, ANSWER, CHOICES):
        if key in features:
            values = [v.decode("utf-8") for v in features[key].bytes_list.value]
            out[key] = values if key == CHOICES else (values[0] if len(values) == 1 else values)
    if not out:
        raise DataFormatError(f"{path}: record {index} has none of the P3 text features "
                              f"(it has: {', '.join(sorted(features)) or 'none'})")
    return out


def _arrow_batches(path: str) -> Iterator[Any]:
    import pyarrow as pa

    with pa.memory_map(path) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:  # the Arrow file format rather than the stream that HF writes
            source.seek(0)
            file_reader = pa.ipc.open_file(source)
            for i in range(file_reader.num_record_batches):
                yield file_reader.get_batch(i)
            return
        yield from reader


def _parquet_batches(path: str) -> Iterator[Any]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = [c for c in (PROMPT, ANSWER, CHOICES) if c in parquet.schema_arrow.names]
    yield from parquet.iter_batches(columns=columns or None)


class P3Source(FileSource):
    """One P3 prompt (`source.name`); `source.splits` maps our splits to P3's split names."""

    @property
    def prompt(self) -> str:
        return self.spec.name

    def data_dir(self) -> str | None:
        env = self.spec.data_dir_env
        if env and os.environ.get(env):
            return os.path.expanduser(os.environ[env])
        if self.spec.data_dir:
            return os.path.join(self.base_dir, os.path.expanduser(self.spec.data_dir))
        return None

    def _prompt_dirs(self, root: str) -> list[str]:
        return [os.path.join(root, "data", self.prompt), os.path.join(root, self.prompt)]

    def locate(self, split: str) -> tuple[str, list[str]] | None:
        """(form, files) of a split: the first form with files in the prompt's folder."""
        root = self.data_dir()
        if not root or not self.prompt:
            return None
        p3_split = self.spec.splits[split]
        for folder in self._prompt_dirs(root):
            for form, patterns in FORMS.items():
                files = sorted({f for pattern in patterns
                                for f in glob.glob(os.path.join(
                                    glob.escape(folder), pattern.format(split=glob.escape(p3_split))))
                                if os.path.isfile(f)})
                if files:
                    return form, files
        return None

    def paths(self, split: str) -> list[str]:
        found = self.locate(split)
        return found[1] if found else []

    def check(self, split):
        if self.locate(split) is not None:
            return None
        env = f"${self.spec.data_dir_env}" if self.spec.data_dir_env else "source.data_dir"
        root = self.data_dir()
        if not self.prompt:
            return "the P3 source names no prompt: give `source.name`"
        if not root:
            return (f"P3 prompt {self.prompt}: no data directory; set {env} to the folder "
                    "holding the P3 prompt folders (a clone of bigscience/P3, or its data/ folder)")
        if not os.path.isdir(root):
            return f"P3 data directory {root} does not exist (from {env}); fix {env}"
        folders = [d for d in self._prompt_dirs(root) if os.path.isdir(d)]
        p3_split = self.spec.splits[split]
        if not folders:
            return (f"P3 prompt {self.prompt} not found: neither {self._prompt_dirs(root)[0]} nor "
                    f"{self._prompt_dirs(root)[1]} exists; download the prompt "
                    f"(bigscience/P3 data/{self.prompt}) or drop the task")
        expected = ", ".join(p.format(split=p3_split) for ps in FORMS.values() for p in ps)
        return (f"P3 prompt {self.prompt}: no {p3_split!r} split in {folders[0]} "
                f"(looked for {expected})")

    def _iter(self, split, shard_index, num_shards):
        found = self.locate(split)
        if found is None:
            raise FlanJaxError(f"task {self.task_name!r}: {self.check(split)}")
        form, files = found
        rows = itertools.chain.from_iterable(self._read(form, path) for path in files)
        return shard(rows, shard_index, num_shards)

    def _read(self, form: str, path: str) -> Iterator[Example]:
        if form == "tfrecord":
            rows = (_example_fields(data, path, i) for i, data in enumerate(tfrecords(path)))
        elif form in ("arrow", "parquet"):
            rows = self._table_rows(path, form)
        else:
            rows = self._json_lines(path)
        for index, row in enumerate(rows):
            if isinstance(row, MalformedRow):
                yield row
                continue
            where = f"{path} record {index}"
            problem = self._problem(row)
            yield MalformedRow(where, problem) if problem else Row(row, where)

    def _json_lines(self, path: str) -> Iterator[Example]:
        with open_text(path) as f:
            yield from self._jsonl_rows(path, f)

    def _table_rows(self, path: str, form: str) -> Iterator[Example]:
        import pyarrow as pa

        batches = _arrow_batches(path) if form == "arrow" else _parquet_batches(path)
        try:
            for batch in batches:
                text = [c for c in (PROMPT, ANSWER, CHOICES) if c in batch.schema.names]
                yield from (batch.select(text) if text else batch).to_pylist()  # no token ids
        except (pa.ArrowException, OSError) as e:
            raise DataFormatError(f"{path}: not a readable {form} file ({e})") from None

    @staticmethod
    def _problem(row: Example) -> str | None:
        """What makes a P3 record unusable (a missing or mistyped field), if anything."""
        for key in (PROMPT, ANSWER):
            if not isinstance(row.get(key), str):
                problem = "is missing" if row.get(key) is None else (
                    f"should be text, got {type(row[key]).__name__}")
                return (f"field {key!r} {problem} (fields: {', '.join(sorted(row)) or 'none'}); "
                        f"a P3 record needs {PROMPT}, {ANSWER} and, for multiple choice, "
                        f"{CHOICES}")
        choices = row.get(CHOICES)
        if choices is not None and not (isinstance(choices, list)
                                        and all(isinstance(c, str) for c in choices)):
            return f"field {CHOICES!r} should be a list of strings, got {choices!r}"
        return None

    def describe(self):
        root = self.data_dir() or f"${self.spec.data_dir_env or 'FLAN_JAX_P3_DIR'} (not set)"
        found = self.locate("train") if "train" in self.spec.splits else None
        form = f"{found[0]} files" if found else "files"
        return f"P3 prompt {self.prompt} ({form} in {root})"
