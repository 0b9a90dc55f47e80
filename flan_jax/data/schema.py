"""Typed, validated definitions of tasks and mixtures read from the YAML catalog.

Every problem is raised as a `CatalogError` naming the file, the field (a dotted
path such as ``tasks[3].templates.opt[2].input``) and what is wrong.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import string
from collections.abc import Mapping
from typing import Any

from flan_jax.errors import CatalogError

NAME_RE = re.compile(r"^[a-z0-9_]+$")
TEMPLATE_GROUPS = ("opt", "noopt", "cot", "inv")
OPTIONS_SLOT = "options_"
# Templates marked `held_out: true` are left out of a task's NAME_STYLE seqio task and make
# up NAME_STYLE + UNSEEN_SUFFIX instead: phrasings never trained on, for evaluation.
UNSEEN_SUFFIX = "_unseen"
# A parser may return alternative field sets under this key (e.g. which dialog turn to
# predict); the renderer picks one per example with the example's seeded generator.
VARIANTS = "_variants"
FILE_FORMATS = ("jsonl", "json", "tsv", "csv")


def style_name(shots: str, group: str) -> str:
    """Style names as in the Flan code: zs_opt, fs_noopt, zs_cot, ..."""
    return f"{shots}_{group}"


ALL_STYLES = tuple(style_name(s, g) for s in ("zs", "fs") for g in TEMPLATE_GROUPS)


@dataclasses.dataclass(frozen=True)
class Template:
    input: str
    target: str
    # Shown once at the head of the prompt: before `input` zero-shot, before all the
    # exemplars few-shot (e.g. an NIv2 task definition); exemplars render `input` only.
    instruction: str = ""
    held_out: bool = False  # never trained on: rendered only by the NAME_STYLE_unseen task


@dataclasses.dataclass(frozen=True)
class FewShotPattern:
    input_prefix: str = ""
    target_prefix: str = ""
    x_y_sep: str = "\n"
    example_sep: str = "\n\n"


@dataclasses.dataclass(frozen=True)
class FewShotSpec:
    k: int = 3
    pool_size: int = 256
    budget: int = 1920
    patterns: tuple[FewShotPattern, ...] = (FewShotPattern(),)
    split: str = "train"  # where exemplars come from (MMLU: "dev")
    select: str = "random"  # "random" (seeded per example) or "first" (the pool's first k, in order)


@dataclasses.dataclass(frozen=True)
class OptionsFormat:
    style: str = "random"  # "random" (seeded per example) or "fixed" ("OPTIONS:\n- a\n- b")
    target_as_label: float = 0.0  # probability of answering with the option's label


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    kind: str  # "tfds" | "files" | "generated" | "reader"
    splits: Mapping[str, Any]  # our split -> tfds split | file path/glob | example count
    name: str = ""  # tfds "name/config:version", "module:function" (generated), or what a reader reads
    data_dir: str | None = None
    data_dir_env: str | None = None
    format: str = ""
    columns: tuple[str, ...] = ()
    header: bool = False
    records: str = ""  # json files: dotted path of the list of examples (BBH: "examples")
    reader: str = ""  # "module:Class", a flan_jax.data.sources.Source subclass that reads `name`
    max_malformed: float | None = None  # fraction of malformed rows tolerated (bad_rows)


@dataclasses.dataclass(frozen=True)
class ParserSpec:
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    options: tuple[str, ...] = ()
    options_from: str | None = None
    label: str | None = None
    join: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    first: Mapping[str, str] = dataclasses.field(default_factory=dict)
    function: str | None = None
    fields: tuple[str, ...] = ()

    @property
    def has_options(self) -> bool:
        return bool(self.options or self.options_from or "options" in self.fields)

    def provided_fields(self) -> frozenset[str]:
        """Fields a template may use."""
        out = set(self.rename) | set(self.join) | set(self.first) | set(self.fields)
        if self.has_options:
            out |= {"options", OPTIONS_SLOT}
        if self.label is not None:
            out.add("answer")
        return frozenset(out)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    file: str
    collection: str
    source: SourceSpec
    parser: ParserSpec
    templates: Mapping[str, tuple[Template, ...]]
    few_shot: FewShotSpec | None = None
    options_format: OptionsFormat = OptionsFormat()
    metrics: tuple[str, ...] = ("accuracy",)
    num_examples: Mapping[str, int] = dataclasses.field(default_factory=dict)
    styles: tuple[str, ...] = ()
    seed: int = 0
    vocabulary: str = "default"
    description: str = ""

    def task_name(self, style: str, unseen: bool = False) -> str:
        """The seqio Task name of one style of this task (`unseen`: of its held-out
        templates)."""
        return f"{self.name}_{style}{UNSEEN_SUFFIX if unseen else ''}"

    def unseen_styles(self) -> tuple[str, ...]:
        """The styles whose template group holds templates marked `held_out`."""
        return tuple(s for s in self.styles
                     if any(t.held_out for t in self.templates[s.split("_", 1)[1]]))


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    name: str
    file: str
    tasks: tuple[str, ...] = ()  # seqio task names or fnmatch patterns
    collections: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    cap: int | None = None
    mixtures: Mapping[str, float] = dataclasses.field(default_factory=dict)
    max_tasks: int | None = None  # only the first N selected task definitions (catalog order)

    @property
    def is_nested(self) -> bool:
        return bool(self.mixtures)


class _Reader:
    """Reads one mapping from YAML, tracking the field path and unknown keys."""

    def __init__(self, file: str, path: str, data: Any):
        self.file, self.path = file, path
        if not isinstance(data, Mapping):
            self.fail("", f"expected a mapping, got {type(data).__name__}")
        self.data = data
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path and key else (self.path or key)

    def fail(self, key: str, problem: str):
        raise CatalogError(self.file, self.where(key), problem)

    def get(self, key: str, types: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                self.fail(key, "required field is missing")
            return default
        value = self.data[key]
        if types is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types) or (isinstance(value, bool) and types in (int, float)):
            names = types.__name__ if isinstance(types, type) else " or ".join(
                t.__name__ for t in types)
            self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def sub(self, key: str, required: bool = False) -> _Reader | None:
        value = self.get(key, Mapping, required=required)
        return None if value is None else _Reader(self.file, self.where(key), value)

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list, str), default=[])
        value = [value] if isinstance(value, str) else value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"expected a string, got {item!r}")
        return tuple(value)

    def str_map(self, key: str) -> dict[str, str]:
        value = self.get(key, Mapping, default={})
        for k, v in value.items():
            if not isinstance(v, str):
                self.fail(f"{key}.{k}", f"expected a string, got {v!r}")
        return {str(k): v for k, v in value.items()}

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            self.fail(unknown[0], f"unknown field (known fields: {', '.join(sorted(self.used))})")


def _name(r: _Reader, key: str = "name") -> str:
    name = r.get(key, str, required=True)
    if not NAME_RE.match(name):
        r.fail(key, f"{name!r} is not a valid name: use lowercase letters, digits and '_'")
    return name


def template_slots(text: str) -> list[str]:
    """The `{field}` names used by a template string (raises ValueError on bad syntax)."""
    slots = []
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"slot {{{field}}} must be a plain field name")
        slots.append(field)
    return slots


def _require_string_splits(r: _Reader, splits: Mapping[str, Any], what: str) -> None:
    for split, value in splits.items():
        if not isinstance(value, str):
            r.fail(f"splits.{split}", f"expected {what}, got {value!r}")


def _read_source(r: _Reader) -> SourceSpec:
    kinds = [k for k in ("tfds", "files", "generated", "reader") if k in r.data]
    if len(kinds) != 1:
        r.fail("", "give exactly one of 'tfds', 'files', 'generated' or 'reader'")
    kind = kinds[0]
    max_malformed = r.get("max_malformed", float)
    if max_malformed is not None and not 0.0 <= max_malformed <= 1.0:
        r.fail("max_malformed", f"expected a fraction of rows between 0 and 1 (0.05 = 5%), "
                                f"got {max_malformed!r}")
    splits = r.get("splits", Mapping, required=True)
    if not splits:
        r.fail("splits", "at least one split is required")
    if kind == "files":
        fmt = r.get("files", str)
        if fmt not in FILE_FORMATS:
            r.fail("files", f"unknown file format {fmt!r}; use one of {', '.join(FILE_FORMATS)}")
        for split, path in splits.items():
            if not isinstance(path, (str, list)):
                r.fail(f"splits.{split}", "expected a path, glob or list of paths")
        columns = r.str_list("columns")
        header = r.get("header", bool, default=False)
        if fmt in ("tsv", "csv") and not columns and not header:
            r.fail("columns", f"{fmt} files need 'columns' or 'header: true'")
        records = r.get("records", str, default="")
        if records and fmt != "json":
            r.fail("records", "'records' applies to json files only")
        spec = SourceSpec(kind, dict(splits), format=fmt, columns=columns, header=header,
                          records=records, data_dir=r.get("data_dir", str),
                          data_dir_env=r.get("data_dir_env", str))
    elif kind == "generated":
        fn = r.get("generated", str)
        if ":" not in fn:
            r.fail("generated", f"expected 'module:function', got {fn!r}")
        for split, count in splits.items():
            if not isinstance(count, int) or count <= 0:
                r.fail(f"splits.{split}", f"expected a positive example count, got {count!r}")
        spec = SourceSpec(kind, dict(splits), name=fn)
    elif kind == "reader":  # a collection's own Source class, e.g. for the P3 prompt files
        reader = r.get("reader", str)
        if ":" not in reader:
            r.fail("reader", f"expected 'module:Class', got {reader!r}")
        _require_string_splits(r, splits, "the reader's split name")
        spec = SourceSpec(kind, dict(splits), name=r.get("name", str, default=""), reader=reader,
                          data_dir=r.get("data_dir", str), data_dir_env=r.get("data_dir_env", str))
    else:
        name = r.get("tfds", str)
        if ":" not in name:
            r.fail("tfds", f"give the builder as 'name/config:version', got {name!r}")
        _require_string_splits(r, splits, "a TFDS split name")
        spec = SourceSpec(kind, dict(splits), name=name, data_dir=r.get("data_dir", str))
    r.done()
    return dataclasses.replace(spec, max_malformed=max_malformed)


def _read_parser(r: _Reader | None) -> ParserSpec:
    if r is None:
        return ParserSpec()
    join = {}
    for field, value in r.get("join", Mapping, default={}).items():
        jr = _Reader(r.file, r.where(f"join.{field}"), value)
        join[field] = (jr.get("from", str, required=True), jr.get("sep", str, default=" "))
        jr.done()
    spec = ParserSpec(
        rename=r.str_map("rename"), options=r.str_list("options"),
        options_from=r.get("options_from", str), label=r.get("label", str), join=join,
        first=r.str_map("first"), function=r.get("function", str), fields=r.str_list("fields"))
    if spec.function and ":" not in spec.function:
        r.fail("function", f"expected 'module:function', got {spec.function!r}")
    if spec.options and spec.options_from:
        r.fail("options", "give either 'options' or 'options_from', not both")
    if spec.label and not spec.has_options:
        r.fail("label", "'label' picks an option by index: it needs 'options' or 'options_from'")
    if spec.function and not spec.fields:
        r.fail("fields", "a parser 'function' must declare the 'fields' it returns")
    r.done()
    return spec


def _read_templates(r: _Reader, provided: frozenset[str]) -> dict[str, tuple[Template, ...]]:
    groups: dict[str, tuple[Template, ...]] = {}
    for group, items in r.data.items():
        if group not in TEMPLATE_GROUPS:
            r.fail(group, f"unknown template group; use {', '.join(TEMPLATE_GROUPS)}")
        if not isinstance(items, list) or not items:
            r.fail(group, "expected a non-empty list of {input, target} templates")
        templates = []
        for i, item in enumerate(items):
            tr = _Reader(r.file, r.where(f"{group}[{i}]"), item)
            template = Template(tr.get("input", str, required=True),
                                tr.get("target", str, required=True),
                                tr.get("instruction", str, default=""),
                                tr.get("held_out", bool, default=False))
            tr.done()
            for part in ("instruction", "input", "target"):
                try:
                    slots = template_slots(getattr(template, part))
                except ValueError as e:
                    tr.fail(part, str(e))
                for slot in slots:
                    if slot == OPTIONS_SLOT and group != "opt":
                        tr.fail(part, "{options_} is shown only by 'opt' templates")
                    if slot not in provided:
                        tr.fail(part, f"template slot {{{slot}}} is not provided by the parser "
                                      f"(it provides: {', '.join(sorted(provided)) or 'nothing'})")
            if group == "opt" and OPTIONS_SLOT not in template_slots(
                    template.instruction + template.input):
                tr.fail("input", "an 'opt' template must show the options with {options_}")
            templates.append(template)
        if all(t.held_out for t in templates):
            r.fail(group, "every template is marked held_out: keep at least one to train on")
        groups[group] = tuple(templates)
        r.used.add(group)
    if "opt" in groups and "options" not in provided:
        r.fail("opt", "'opt' templates need a parser that provides options")
    return groups


def _read_few_shot(r: _Reader | None) -> FewShotSpec | None:
    if r is None:
        return None
    patterns = []
    for i, item in enumerate(r.get("patterns", list, default=[{}])):
        pr = _Reader(r.file, r.where(f"patterns[{i}]"), item)
        defaults = FewShotPattern()
        patterns.append(FewShotPattern(**{
            f.name: pr.get(f.name, str, default=getattr(defaults, f.name))
            for f in dataclasses.fields(FewShotPattern)}))
        pr.done()
    spec = FewShotSpec(k=r.get("k", int, default=3), pool_size=r.get("pool_size", int, default=256),
                       budget=r.get("budget", int, default=1920), patterns=tuple(patterns),
                       split=r.get("split", str, default="train"),
                       select=r.get("select", str, default="random"))
    if spec.select not in ("random", "first"):
        r.fail("select", f"unknown exemplar selection {spec.select!r}; use 'random' or 'first'")
    for key in ("k", "pool_size", "budget"):
        if getattr(spec, key) <= 0:
            r.fail(key, f"must be > 0, got {getattr(spec, key)}")
    r.done()
    return spec


def _read_options_format(r: _Reader | None) -> OptionsFormat:
    if r is None:
        return OptionsFormat()
    fmt = OptionsFormat(style=r.get("style", str, default="random"),
                        target_as_label=r.get("target_as_label", float, default=0.0))
    if fmt.style not in ("random", "fixed"):
        r.fail("style", f"unknown options style {fmt.style!r}; use 'random' or 'fixed'")
    if not 0.0 <= fmt.target_as_label <= 1.0:
        r.fail("target_as_label", f"a probability in [0, 1] is required, got {fmt.target_as_label}")
    r.done()
    return fmt


def read_task(file: str, path: str, data: Mapping[str, Any],
              memo: dict | None = None) -> TaskSpec:
    """Validates one task definition (defaults already merged in). With a `memo` dict
    (the caller's, one per file), definitions that share the very same `templates` /
    `few_shot` mappings (defaults, `expand`ed tasks) have them validated once."""
    r = _Reader(file, path, data)

    def shared(key: str, extra: Any, read: Any) -> Any:
        value = data.get(key)
        if memo is None or not isinstance(value, Mapping):
            return read()
        hit = memo.get((key, id(value), extra))
        if hit is None or hit[0] is not value:
            hit = memo[(key, id(value), extra)] = (value, read())
        r.used.add(key)
        return hit[1]

    name = _name(r)
    source = _read_source(r.sub("source", required=True))
    parser = _read_parser(r.sub("parser"))
    if source.kind == "files" and source.columns and not (parser.rename or parser.function):
        parser = dataclasses.replace(parser, fields=parser.fields or source.columns)
    provided = parser.provided_fields()
    templates = shared("templates", provided,
                       lambda: _read_templates(r.sub("templates", required=True), provided))
    few_shot = shared("few_shot", None, lambda: _read_few_shot(r.sub("few_shot")))
    derived = [style_name("zs", g) for g in templates]
    if few_shot is not None:
        derived += [style_name("fs", g) for g in templates]
    styles = r.str_list("styles") or tuple(derived)
    for style in styles:
        if style not in derived:
            r.fail("styles", f"style {style!r} needs templates/few_shot this task lacks "
                             f"(available: {', '.join(derived)})")
    num_examples = r.get("num_examples", Mapping, default={})
    for split, n in num_examples.items():
        if not isinstance(n, int) or n < 0:
            r.fail(f"num_examples.{split}", f"expected a count >= 0, got {n!r}")
    spec = TaskSpec(
        name=name, file=file, collection=r.get("collection", str, default="default"),
        source=source, parser=parser, templates=templates, few_shot=few_shot,
        options_format=_read_options_format(r.sub("options_format")),
        metrics=r.str_list("metrics") or ("accuracy",), num_examples=dict(num_examples),
        styles=styles, seed=r.get("seed", int, default=0),
        vocabulary=r.get("vocabulary", str, default="default"),
        description=r.get("description", str, default=""))
    r.done()
    return spec


def read_mixture(file: str, path: str, data: Mapping[str, Any]) -> MixtureSpec:
    """Validates one mixture definition; member names are checked by the registry."""
    r = _Reader(file, path, data)
    name = _name(r)
    mixtures = r.get("mixtures", Mapping, default={})
    for member, weight in mixtures.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            r.fail(f"mixtures.{member}", f"a weight must be a number > 0, got {weight!r}")
    spec = MixtureSpec(
        name=name, file=file, tasks=r.str_list("tasks"), collections=r.str_list("collections"),
        styles=r.str_list("styles"), cap=r.get("cap", int),
        mixtures={str(k): float(v) for k, v in mixtures.items()},
        max_tasks=r.get("max_tasks", int))
    if spec.cap is not None and spec.cap <= 0:
        r.fail("cap", f"a cap must be > 0, got {spec.cap}")
    if spec.max_tasks is not None and (spec.max_tasks <= 0 or spec.is_nested):
        r.fail("max_tasks", f"max_tasks must be > 0 and belongs to a leaf mixture, "
                            f"got {spec.max_tasks}")
    selects = bool(spec.tasks or spec.collections or spec.styles)
    if selects == spec.is_nested:
        r.fail("", "give either member 'mixtures' with weights, or tasks selected by "
                   "'tasks' / 'collections' / 'styles'")
    for style in spec.styles:
        if style not in ALL_STYLES:
            r.fail("styles", f"unknown style {style!r}; use {', '.join(ALL_STYLES)}")
    r.done()
    return spec


@dataclasses.dataclass
class Catalog:
    """Validated task and mixture definitions, by name."""

    tasks: dict[str, TaskSpec] = dataclasses.field(default_factory=dict)
    mixtures: dict[str, MixtureSpec] = dataclasses.field(default_factory=dict)

    def task_styles(self) -> dict[str, tuple[TaskSpec, str]]:
        """Every seqio task name -> (its definition, its style); do not modify it (it is
        reused until `tasks` changes)."""
        key = tuple(map(id, self.tasks.values()))
        cached = self.__dict__.get("_task_styles")
        if cached is None or cached[0] != key:
            cached = self.__dict__["_task_styles"] = (key, {
                spec.task_name(style): (spec, style)
                for spec in self.tasks.values() for style in spec.styles})
        return cached[1]

    def members(self, mixture: str) -> list[str]:
        """The seqio task names a leaf mixture selects, in catalog order (with
        `max_tasks`, those of the first N selected task definitions)."""
        spec = self.mixtures[mixture]
        out, definitions = [], set()
        for name, (task, style) in self.task_styles().items():
            if spec.tasks and not any(fnmatch.fnmatchcase(name, p) for p in spec.tasks):
                continue
            if spec.collections and task.collection not in spec.collections:
                continue
            if spec.styles and style not in spec.styles:
                continue
            if spec.max_tasks is not None and task.name not in definitions:
                if len(definitions) == spec.max_tasks:
                    continue
                definitions.add(task.name)
            out.append(name)
        return out
