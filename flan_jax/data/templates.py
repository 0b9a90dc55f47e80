"""Template rendering: zero-/few-shot, with or without answer options, CoT, inversions.

Every random choice (variant, template, options style, few-shot pattern and exemplars)
comes from `example_rng(seed, task, index, epoch)`, so the same example renders
the same way in every run and on every host, and no example is ever dropped.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import re
from collections.abc import Callable, Sequence

from flan_jax.data.schema import OPTIONS_SLOT, VARIANTS, FewShotPattern, TaskSpec, Template
from flan_jax.data.sources import Example

OPTION_HEADERS = (
    "OPTIONS:", "Options:", "Choose from:", "Pick from:", "Possible answers:",
    "Available choices:", "Select from the following:", "Choices:", "Answer choices:",
    "Pick your answer from:",
)

# (marker for option i, whether the marker is a label an answer can name)
_MARKERS: tuple[tuple[Callable[[int], str], bool], ...] = (
    (lambda i: "-", False),
    (lambda i: "*", False),
    (lambda i: "+", False),
    (lambda i: f"({chr(65 + i)})", True),
    (lambda i: f"{chr(65 + i)}.", True),
    (lambda i: f"{chr(65 + i)})", True),
    (lambda i: f"({chr(97 + i)})", True),
    (lambda i: f"{i + 1}.", True),
    (lambda i: f"({i + 1})", True),
    (lambda i: f"[{i + 1}]", True),
)
_OPTION_SEPARATORS = ("\n", "\n", "\n", " ")


@dataclasses.dataclass(frozen=True)
class OptionsStyle:
    """How one prompt lays out its answer options (shared by its exemplars)."""

    header: str = "OPTIONS:"
    marker: int = 0
    separator: str = "\n"
    answer_as_label: bool = False

    def render(self, options: Sequence[str]) -> str:
        marker = _MARKERS[self.marker][0]
        items = [f"{marker(i)} {option}" for i, option in enumerate(options)]
        return self.header + self.separator + self.separator.join(items)

    def label(self, options: Sequence[str], answer: str) -> str | None:
        """The marker that names `answer`, when answers are given as labels."""
        if not (self.answer_as_label and answer in options):
            return None
        return _MARKERS[self.marker][0](list(options).index(answer)).rstrip(".")


FIXED_OPTIONS = OptionsStyle()


def example_rng(seed: int, task: str, index: int, epoch: int) -> random.Random:
    """The one source of randomness for rendering an example (stable across hosts)."""
    return random.Random(f"{seed}/{task}/{index}/{epoch}")


def choose_options_style(spec: TaskSpec, rng: random.Random) -> OptionsStyle:
    if spec.options_format.style == "fixed":
        return FIXED_OPTIONS
    marker = rng.randrange(len(_MARKERS))
    return OptionsStyle(
        header=rng.choice(OPTION_HEADERS), marker=marker, separator=rng.choice(_OPTION_SEPARATORS),
        answer_as_label=_MARKERS[marker][1] and rng.random() < spec.options_format.target_as_label)


def pick_variant(fields: Example, rng: random.Random) -> Example:
    """One of the alternative field sets a parser offers under `_variants` (e.g. which turn
    of a dialog to predict), merged over the example's shared fields; an example without
    variants is returned as it is (and draws nothing from `rng`)."""
    variants = fields.get(VARIANTS)
    if variants is None:
        return fields
    shared = {k: v for k, v in fields.items() if k != VARIANTS}
    return {**shared, **variants[rng.randrange(len(variants))]}


_SLOT_WITH_SPACE = re.compile(r"(\s*)(?<!\{)\{" + OPTIONS_SLOT + r"\}(\s*)")


@functools.lru_cache(maxsize=4096)
def without_options_slot(template: Template) -> Template:
    """The template as if it had no {options_} slot: the slot goes with the whitespace that
    joins it to the text (the wider side's is kept between two pieces of text)."""
    def drop(text: str) -> str:
        def keep(m: re.Match) -> str:
            if m.start() == 0 or m.end() == len(text):
                return ""
            return max(m.group(1), m.group(2), key=len)
        return _SLOT_WITH_SPACE.sub(keep, text)
    # An instruction's trailing whitespace separates it from what follows: keep it.
    head = template.instruction.rstrip()
    return dataclasses.replace(template, input=drop(template.input), target=drop(template.target),
                               instruction=drop(head) + template.instruction[len(head):])


def fill(template: Template, fields: Example, options: OptionsStyle | None) -> tuple[str, str]:
    """Renders one template with one example's fields: (instruction + input, target)."""
    instruction, inputs, targets = fill_parts(template, fields, options)
    return instruction + inputs, targets


def fill_parts(template: Template, fields: Example,
               options: OptionsStyle | None) -> tuple[str, str, str]:
    """Renders (instruction, input, target). An example whose `options` list is empty
    (nothing to choose from) renders an 'opt' template without its {options_} slot."""
    values = fields
    if options is not None and "options" in fields and not fields["options"]:
        template = without_options_slot(template)
    elif options is not None and "options" in fields:
        values = dict(fields, **{OPTIONS_SLOT: options.render(fields["options"])})
        label = options.label(fields["options"], str(fields.get("answer", "")))
        if label is not None:
            values["answer"] = label
    return (template.instruction.format_map(values), template.input.format_map(values),
            template.target.format_map(values))


@dataclasses.dataclass(frozen=True)
class Rendered:
    inputs: str
    targets: str
    template_idx: int


def _upper_bound_tokens(text: str) -> int:
    """A SentencePiece or byte vocabulary never yields more tokens than bytes + 1."""
    return len(text.encode("utf-8")) + 1


class Renderer:
    """Renders examples of one task in one style (e.g. `fs_opt`), with the templates
    trained on, or (`unseen`) with those marked `held_out` only."""

    def __init__(self, spec: TaskSpec, style: str, seed: int | None = None,
                 token_length: Callable[[str], int] | None = None, unseen: bool = False):
        self.spec, self.style = spec, style
        shots, _, self.group = style.partition("_")
        self.few_shot = spec.few_shot if shots == "fs" else None
        self.templates = spec.templates[self.group]
        # Indices into `templates` (an example's `_template_idx` names the full list).
        self.template_ids = [i for i, t in enumerate(self.templates) if t.held_out == unseen]
        if not self.template_ids:
            raise ValueError(f"task {spec.name}: no {'held-out' if unseen else 'trained'} "
                             f"{self.group!r} templates")
        self.seed = spec.seed if seed is None else seed
        self.task_name = spec.task_name(style, unseen)
        self._token_length = token_length
        self._length_cache: dict[str, int] = {}

    def render(self, fields: Example, index: int, epoch: int = 0,
               pool: Sequence[tuple[int, Example]] = (), query_in_pool: bool = False) -> Rendered:
        """Renders one example. `pool` holds (index, fields) few-shot candidates; when
        `query_in_pool`, the candidate with the query's own index is never used."""
        rng = example_rng(self.seed, self.task_name, index, epoch)
        fields = pick_variant(fields, rng)
        template_idx = self.template_ids[rng.randrange(len(self.template_ids))]
        template = self.templates[template_idx]
        options = choose_options_style(self.spec, rng) if self.group == "opt" else None
        header, query, targets = fill_parts(template, fields, options)
        inputs = header + query
        if self.few_shot is not None:  # the instruction once, then exemplars and the query
            pattern = rng.choice(self.few_shot.patterns)
            exclude = index if query_in_pool else None
            exemplars = self._exemplars(rng, pool, exclude)
            shots = [fill_parts(template, pick_variant(ex, rng), options)[1:] for ex in exemplars]
            inputs = header + self._few_shot_prompt(pattern, shots, query, header)
        return Rendered(inputs, targets, template_idx)

    def _exemplars(self, rng: random.Random, pool: Sequence[tuple[int, Example]],
                   exclude: int | None) -> list[Example]:
        k = self.few_shot.k
        if self.few_shot.select == "first":
            picks = range(min(len(pool), k + 1))
        else:
            picks = rng.sample(range(len(pool)), min(len(pool), k + 1))
        chosen = [pool[i][1] for i in picks if pool[i][0] != exclude]
        return chosen[:k]

    def _few_shot_prompt(self, pattern: FewShotPattern, shots: list[tuple[str, str]],
                         query: str, header: str = "") -> str:
        last = pattern.input_prefix + query + pattern.x_y_sep + pattern.target_prefix.rstrip()
        blocks = [pattern.input_prefix + x + pattern.x_y_sep + pattern.target_prefix + y
                  for x, y in shots if x != query]
        while blocks and self._length(blocks, last, pattern.example_sep,
                                      header) > self.few_shot.budget:
            blocks.pop(0)
        return pattern.example_sep.join([*blocks, last])

    def _length(self, blocks: list[str], last: str, sep: str, header: str = "") -> int:
        parts = [*blocks, last] + [sep] * len(blocks) + ([header] if header else [])
        if sum(_upper_bound_tokens(p) for p in parts) <= self.few_shot.budget:
            return 0
        if self._token_length is None:
            return sum(_upper_bound_tokens(p) for p in parts)
        if len(self._length_cache) > 200_000:
            self._length_cache.clear()
        total = 0
        for part in parts:
            n = self._length_cache.get(part)
            if n is None:
                n = self._length_cache[part] = self._token_length(part)
            total += n
        return total
