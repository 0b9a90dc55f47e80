"""Parsers: map a raw source example to the fields that templates use.

Declarative for the common cases (rename, label index -> option text, join or
take the first of a list), or a named Python function for the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flan_jax.data.schema import VARIANTS, ParserSpec
from flan_jax.data.sources import Example, import_function
from flan_jax.errors import DataFormatError

Parser = Callable[[Example], Example]


def lookup(example: Example, path: str) -> Any:
    """Reads a dotted path ('answers.text') from a nested example."""
    value: Any = example
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(path)
        value = value[key]
    return value


def _as_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise DataFormatError(f"field {path!r} should be a list, got {type(value).__name__}")
    return value


def _variants(out: Example) -> list[Example] | None:
    """The alternative field sets a parser function offers under `_variants`, checked."""
    if VARIANTS not in out:
        return None
    variants = out[VARIANTS]
    if not isinstance(variants, list) or not variants or not all(
            isinstance(v, dict) for v in variants):
        raise DataFormatError(f"the parser's {VARIANTS!r} must be a non-empty list of field dicts")
    return variants


def make_parser(spec: ParserSpec) -> Parser:
    """Builds the parser for a task; its output has exactly `spec.provided_fields()`
    minus the rendered `options_` slot."""
    function = import_function(spec.function) if spec.function else None

    def parse(raw: Example) -> Example:
        out: Example = dict(function(raw)) if function else {}
        variants = _variants(out)
        for field in spec.fields:
            if field in out:
                continue
            if variants:
                if not all(field in v for v in variants):
                    raise DataFormatError(f"field {field!r} is missing from some of the "
                                          f"parser's {len(variants)} {VARIANTS}")
                continue
            out[field] = lookup(raw, field)
        for field, path in spec.rename.items():
            out[field] = lookup(raw, path)
        for field, path in spec.first.items():
            items = _as_list(lookup(raw, path), path)
            out[field] = items[0] if items else ""
        for field, (path, sep) in spec.join.items():
            out[field] = sep.join(str(x) for x in _as_list(lookup(raw, path), path))
        if spec.options:
            out["options"] = list(spec.options)
        elif spec.options_from:
            out["options"] = [str(x) for x in _as_list(lookup(raw, spec.options_from),
                                                       spec.options_from)]
        if spec.label is not None:
            label = lookup(raw, spec.label)
            if not isinstance(label, int) or not 0 <= label < len(out["options"]):
                raise DataFormatError(f"label {label!r} in field {spec.label!r} is not an index "
                                      f"into the {len(out['options'])} options")
            out["answer"] = out["options"][label]
        return out

    def safe_parse(raw: Example) -> Example:
        try:
            return parse(raw)
        except KeyError as e:
            raise DataFormatError(f"raw example has no field {e.args[0]!r} "
                                  f"(it has: {', '.join(sorted(raw))})") from None

    return safe_parse
