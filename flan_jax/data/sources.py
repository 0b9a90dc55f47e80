"""Raw data sources: TFDS builders, local JSONL/TSV/CSV files, and Python generators.

A source yields `(index, example)` pairs in a fixed canonical order, where the
index is the example's position in its split; everything random downstream is
keyed on that index, so the order never changes between runs or hosts.
Examples are plain Python values (bytes decoded to str, arrays to lists); file rows are
`Row`s that name their line, and a line that cannot be read is a `MalformedRow` in its
place (the task's reader skips and counts it, see `flan_jax.data.bad_rows`).
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import importlib
import io
import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from flan_jax.data.schema import SourceSpec
from flan_jax.errors import DataFormatError, FlanJaxError

Example = dict[str, Any]


class Row(dict):
    """A raw example that knows where it came from (`where`: 'data.tsv line 12')."""

    __slots__ = ("where",)

    def __init__(self, data: Example, where: str):
        super().__init__(data)
        self.where = where


@dataclasses.dataclass(frozen=True)
class MalformedRow:
    """Stands in for a row that cannot be read, so later rows keep their indices."""

    where: str
    problem: str


def import_function(ref: str) -> Callable[..., Any]:
    """Resolves 'package.module:function'; a clear error if it does not exist."""
    module_name, _, fn_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise FlanJaxError(f"cannot import module {module_name!r} (from {ref!r}): {e}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise FlanJaxError(f"{ref!r}: module {module_name!r} has no function {fn_name!r}")
    return fn


def to_python(value: Any) -> Any:
    """Converts TFDS numpy values to plain Python: bytes -> str, arrays -> lists."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value] if value.ndim else to_python(value.item())
    if isinstance(value, np.generic):
        return value.item()
    return value


def raw_field(raw: Example, key: str) -> Any:
    """`raw[key]`, or a DataFormatError naming the missing field and the fields present."""
    if key not in raw:
        raise DataFormatError(f"raw example has no field {key!r} (it has: {', '.join(sorted(raw))})")
    return raw[key]


def shard(items: Iterator[Any], shard_index: int, num_shards: int) -> Iterator[tuple[int, Any]]:
    """(index, item) of every `num_shards`-th item from `shard_index`: one host's share."""
    return itertools.islice(enumerate(items), shard_index, None, num_shards)


class Source:
    """Base class; subclasses implement `_iter` and `check`."""

    count_origin = "source metadata"  # what `count` is read from (mixture tables say it)

    def __init__(self, spec: SourceSpec, task_name: str, base_dir: str):
        self.spec, self.task_name, self.base_dir = spec, task_name, base_dir

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.spec.splits)

    def require_split(self, split: str) -> None:
        if split not in self.spec.splits:
            raise FlanJaxError(f"task {self.task_name!r} has no split {split!r} "
                               f"(it has: {', '.join(self.splits)})")

    def iter_split(self, split: str, shard_index: int = 0,
                   num_shards: int = 1) -> Iterator[tuple[int, Example]]:
        """Yields (index, example) for one shard of a split, in canonical order."""
        self.require_split(split)
        return self._iter(split, shard_index, num_shards)

    def _iter(self, split: str, shard_index: int, num_shards: int) -> Iterator[tuple[int, Example]]:
        raise NotImplementedError

    def check(self, split: str) -> str | None:
        """None when the split's data can be read, else the reason it cannot."""
        raise NotImplementedError

    def count(self, split: str) -> int | None:
        """Number of examples if known without reading the data, else None."""
        return None

    def describe(self) -> str:
        raise NotImplementedError


class GeneratedSource(Source):
    """Examples produced by `fn(split, num_examples, seed)` named in the YAML."""

    count_origin = "declared"

    def _iter(self, split, shard_index, num_shards):
        fn = import_function(self.spec.name)
        return shard(iter(fn(split=split, num_examples=self.spec.splits[split], seed=0)),
                      shard_index, num_shards)

    def check(self, split):
        try:
            import_function(self.spec.name)
        except FlanJaxError as e:
            return str(e)
        return None

    def count(self, split):
        return self.spec.splits[split]

    def describe(self):
        return f"generated by {self.spec.name} ({', '.join(f'{s}: {n}' for s, n in self.spec.splits.items())})"


def open_text(path: str) -> io.TextIOBase:
    """A UTF-8 text file, gunzipped when its name ends in .gz."""
    opener = gzip.open if path.endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8", newline="")


class FileSource(Source):
    """JSONL, TSV or CSV files (optionally gzipped), one example per row."""

    def data_dir(self) -> str:
        if self.spec.data_dir_env and os.environ.get(self.spec.data_dir_env):
            return os.environ[self.spec.data_dir_env]
        return self.spec.data_dir or self.base_dir

    def paths(self, split: str) -> list[str]:
        patterns = self.spec.splits[split]
        patterns = [patterns] if isinstance(patterns, str) else patterns
        out: list[str] = []
        for pattern in patterns:
            full = os.path.join(self.data_dir(), os.path.expanduser(pattern))
            out.extend(sorted(glob.glob(full)) if glob.has_magic(full) else [full])
        return out

    def check(self, split):
        paths = self.paths(split)
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing or not paths:
            hint = (f"; set ${self.spec.data_dir_env} to the directory holding it"
                    if self.spec.data_dir_env else "")
            return f"data file not found: {missing[0] if missing else self.spec.splits[split]}{hint}"
        return None

    def _iter(self, split, shard_index, num_shards):
        reason = self.check(split)
        if reason:
            raise FlanJaxError(f"task {self.task_name!r}: {reason}")
        rows = itertools.chain.from_iterable(self._rows(p) for p in self.paths(split))
        return shard(rows, shard_index, num_shards)

    def _rows(self, path: str) -> Iterator[Example | MalformedRow]:
        with open_text(path) as f:
            if self.spec.format == "jsonl":
                yield from self._jsonl_rows(path, f)
            elif self.spec.format == "json":
                yield from self._json_records(path, f)
            else:
                yield from self._delimited_rows(path, f)

    def _jsonl_rows(self, path: str, f: io.TextIOBase) -> Iterator[Example | MalformedRow]:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path} line {line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                yield MalformedRow(where, f"malformed JSON line: {e.msg}")
                continue
            if not isinstance(row, dict):
                yield MalformedRow(where, "expected a JSON object per line")
                continue
            yield Row(row, where)

    def _json_records(self, path: str, f: io.TextIOBase) -> Iterator[Example]:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None
        for key in filter(None, self.spec.records.split(".")):
            if not isinstance(data, dict) or key not in data:
                raise DataFormatError(f"{path}: no {self.spec.records!r} list in the JSON file")
            data = data[key]
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: expected a list of JSON objects"
                                  + (f" at {self.spec.records!r}" if self.spec.records else ""))
        for i, item in enumerate(data):
            where = f"{path} {self.spec.records or 'item'}[{i}]"
            yield Row(item, where) if isinstance(item, dict) else MalformedRow(
                where, f"expected a JSON object, got {type(item).__name__}")

    def _delimited_rows(self, path: str, f: io.TextIOBase) -> Iterator[Example]:
        delimiter = "\t" if self.spec.format == "tsv" else ","
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        columns = list(self.spec.columns)
        if self.spec.header:
            header = next(reader, None) or []
            columns = columns or header
        for row in reader:
            if not row:
                continue
            where = f"{path} line {reader.line_num}"
            if len(row) != len(columns):
                yield MalformedRow(where, f"expected {len(columns)} columns "
                                          f"({', '.join(columns)}), found {len(row)}")
            else:
                yield Row(dict(zip(columns, row)), where)

    def describe(self):
        return f"{self.spec.format} files in {self.data_dir()}: " + ", ".join(
            f"{s}={p}" for s, p in self.spec.splits.items())


class TfdsSource(Source):
    """A TFDS builder given as 'name/config:version', read without shuffling."""

    count_origin = "TFDS metadata"

    def _builder(self):
        import tensorflow_datasets as tfds

        data_dir = os.path.expanduser(self.spec.data_dir) if self.spec.data_dir else None
        return tfds.builder(self.spec.name, data_dir=data_dir)

    def _dataset(self, split: str):
        return self._builder().as_dataset(split=self.spec.splits[split], shuffle_files=False)

    def check(self, split):
        try:
            self._dataset(split)
        except Exception as e:  # noqa: BLE001 - TFDS raises many types; report any by name
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return (f"TFDS {self.spec.name} split {self.spec.splits[split]!r} is not available "
                    f"({first_line}); prepare it with `tfds build` or set its data_dir")
        return None

    def _iter(self, split, shard_index, num_shards):
        import tensorflow_datasets as tfds

        reason = self.check(split)
        if reason:
            raise FlanJaxError(f"task {self.task_name!r}: {reason}")
        ds = self._dataset(split).shard(num_shards, shard_index)
        indices = itertools.count(shard_index, num_shards)
        return ((i, to_python(ex)) for i, ex in zip(indices, tfds.as_numpy(ds)))

    def count(self, split):
        try:
            info = self._builder().info
            return info.splits[self.spec.splits[split]].num_examples or None
        except Exception:  # noqa: BLE001 - unknown counts are measured instead
            return None

    def describe(self):
        return f"TFDS {self.spec.name} ({', '.join(f'{s}={t}' for s, t in self.spec.splits.items())})"


_KINDS = {"generated": GeneratedSource, "files": FileSource, "tfds": TfdsSource}


def make_source(spec: SourceSpec, task_name: str, yaml_file: str) -> Source:
    if spec.kind == "reader":  # a Source subclass named in the YAML (`reader: module:Class`)
        cls = import_function(spec.reader)
        if not (isinstance(cls, type) and issubclass(cls, Source)):
            raise FlanJaxError(f"task {task_name!r}: reader {spec.reader!r} is not a "
                               "flan_jax.data.sources.Source subclass")
        return cls(spec, task_name, str(Path(yaml_file).parent))
    return _KINDS[spec.kind](spec, task_name, str(Path(yaml_file).parent))
