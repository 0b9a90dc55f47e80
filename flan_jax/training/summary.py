"""The end-of-training results: one Markdown table, a bar chart and a one-line verdict.

Every evaluated task is a row with its chance and majority baselines and its score
before (untrained) and after training: decoded exact match, and rank classification
where it was measured. Rows are grouped:

- trained: tasks whose family (task definition) the mixture trained on, in this style or
  another (`x_zs_opt` is not held out after training on `x_zs_noopt`: the same examples).
  An evaluated `NAME_unseen` task (the task's held-out templates, see
  `flan_jax.data.schema`) is shown as the `unseen templates` column of NAME's row rather
  than as a row of its own.
- chain of thought: each evaluated CoT task (style `zs_cot`/`fs_cot`), followed by its
  direct counterpart when that is evaluated too: the same task name with `noopt` for
  `cot` (same family, shots and templates split), scored by the same final answer.
- held out: tasks of families the mixture never trained on.

A score that is missing or not a number (NaN, from an empty split say) is left blank.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flan_jax.data.schema import UNSEEN_SUFFIX

TRAINED, COT, HELD_OUT = "trained", "chain of thought", "held out"
_COT_STYLE = re.compile(r"_(zs|fs)_cot(?=$|_)")


@dataclass
class Row:
    task: str
    group: str
    n: int
    chance: float | None            # % of a uniform guess among the listed options
    majority: float                 # % of always answering the commonest target
    untrained: float | None         # decoded exact match before training (%)
    trained: float | None           # ... and after
    unseen: float | None = None     # after training, on the task's held-out templates
    rank_untrained: float | None = None  # rank classification over the options (%)
    rank_trained: float | None = None


def direct_counterpart(task: str) -> str | None:
    """The direct (no options) task of a CoT task: `x_zs_cot_unseen` -> `x_zs_noopt_unseen`."""
    if not _COT_STYLE.search(task):
        return None
    return _COT_STYLE.sub(lambda m: f"_{m.group(1)}_noopt", task, count=1)


def _score(value: float | None) -> float | None:
    """A score for the table: None when missing or not a finite number."""
    return value if value is not None and math.isfinite(value) else None


def build_rows(eval_sets: Mapping[str, Any], before: Mapping[str, Mapping[str, float]],
               after: Mapping[str, Mapping[str, float]], trained_on: Collection[str],
               families: Mapping[str, str] | None = None) -> list[Row]:
    """Rows of the results table (see the module docstring for the grouping), trained
    tasks first, then chain of thought, then held out; each group in evaluation order.

    `families`: seqio task name -> its task definition (`flan_jax.data.registry.
    task_families`) for the trained and evaluated tasks; a task missing from it is its
    own family."""
    families = families or {}

    def row(task: str, group: str) -> Row:
        es = eval_sets[task]
        unseen = task + UNSEEN_SUFFIX
        return Row(task, group, len(es.targets), _score(es.chance), es.majority,
                   _score(before.get(task, {}).get("accuracy")),
                   _score(after.get(task, {}).get("accuracy")),
                   _score(after.get(unseen, {}).get("accuracy")) if unseen in eval_sets
                   else None,
                   _score(before.get(task, {}).get("rank_accuracy")),
                   _score(after.get(task, {}).get("rank_accuracy")))

    folded = {t for t in eval_sets
              if t.endswith(UNSEEN_SUFFIX) and t[:-len(UNSEEN_SUFFIX)] in eval_sets}
    cot, placed = [], set(folded)
    for task in eval_sets:
        if task not in placed and direct_counterpart(task):
            cot.append(row(task, COT))
            placed.add(task)
            direct = direct_counterpart(task)
            if direct in eval_sets and direct not in placed:
                cot.append(row(direct, COT))
                placed.add(direct)

    trained_families = {families.get(t, t) for t in trained_on}

    def is_trained(task: str) -> bool:
        base = task[:-len(UNSEEN_SUFFIX)] if task.endswith(UNSEEN_SUFFIX) else task
        return (task in trained_on or base in trained_on
                or families.get(task, task) in trained_families)

    rest = [t for t in eval_sets if t not in placed]
    return ([row(t, TRAINED) for t in rest if is_trained(t)] + cot
            + [row(t, HELD_OUT) for t in rest if not is_trained(t)])


_COLUMNS = ("chance", "majority", "untrained", "trained", "unseen", "rank_untrained",
            "rank_trained")
_HEADERS = ("chance", "majority", "untrained", "trained", "trained, unseen templates",
            "rank cls., untrained", "rank cls., trained")


def mean_known(values: Sequence[float | None]) -> float | None:
    """Mean of the known scores (None and NaN left out), None if there are none."""
    known = [v for v in values if v is not None and not math.isnan(v)]
    return sum(known) / len(known) if known else None


def group_means(rows: Sequence[Row], group: str) -> dict[str, float | None]:
    """Mean of each score column over a group's rows (None where no row has it)."""
    members = [r for r in rows if r.group == group]
    return {c: mean_known([getattr(r, c) for r in members]) for c in _COLUMNS}


def percent_cell(value: float | None) -> str:
    """A table cell: the score in percent, or empty when unknown."""
    return "" if value is None else f"{value:.1f}%"


def markdown(rows: Sequence[Row]) -> str:
    """One Markdown table: every row, and the mean of the trained and held-out groups."""
    lines = ["| group | task | n | " + " | ".join(_HEADERS) + " |",
             "|---|---|---:|" + "---:|" * len(_HEADERS)]
    for group in (TRAINED, COT, HELD_OUT):
        members = [r for r in rows if r.group == group]
        for r in members:
            cells = [percent_cell(getattr(r, c)) for c in _COLUMNS]
            lines.append(f"| {group} | {r.task} | {r.n} | " + " | ".join(cells) + " |")
        if len(members) > 1 and group != COT:
            means = group_means(rows, group)
            lines.append(f"| **{group}: mean** | {len(members)} tasks | | "
                         + " | ".join(f"**{percent_cell(means[c])}**" if means[c] is not None else ""
                                      for c in _COLUMNS) + " |")
    return "\n".join(lines)


def results_markdown(rows: Sequence[Row], first_step: int, last_step: int, note: str = "") -> str:
    """results.md: a heading, `note`, the table and the verdict."""
    head = [f"# Results: step {first_step} (untrained) -> step {last_step} (trained)", ""]
    if note:
        head += [note, ""]
    head += ["Accuracy in %: decoded exact match (greedy), and rank classification (the "
             "option the model finds most likely) where measured. Chance: a uniform guess "
             "among the listed options; majority: always the commonest answer.", ""]
    return "\n".join(head + [markdown(rows), "", f"**Verdict:** {verdict(rows)}"])


def verdict(rows: Sequence[Row]) -> str:
    """One line: the trained tasks' mean against chance, then unseen templates and the
    held-out tasks, e.g. 'trained mean 78% vs chance 31% (...)'."""
    parts = []
    t = group_means(rows, TRAINED)
    n = sum(r.group == TRAINED for r in rows)
    if n and t["trained"] is not None:
        base = [f"majority {t['majority']:.0f}%"]
        if t["untrained"] is not None:
            base.append(f"untrained {t['untrained']:.0f}%")
        chance = f" vs chance {t['chance']:.0f}%" if t["chance"] is not None else ""
        parts.append(f"trained mean {t['trained']:.0f}%{chance} ({', '.join(base)}) "
                     f"on {n} trained tasks")
        if t["unseen"] is not None:
            parts.append(f"unseen templates {t['unseen']:.0f}%")
    h = group_means(rows, HELD_OUT)
    m = sum(r.group == HELD_OUT for r in rows)
    if m and h["trained"] is not None:
        text = f"{m} held-out tasks {h['trained']:.0f}% decoded"
        if h["rank_trained"] is not None:
            text += f", {h['rank_trained']:.0f}% rank classification"
        if h["chance"] is not None:
            text += f" (chance {h['chance']:.0f}%)"
        parts.append(text)
    return "; ".join(parts) if parts else "no decoded evaluation"


def plot(rows: Sequence[Row], path: Path) -> None:
    """Bars per task: chance, untrained, trained (and, where measured, trained on the
    unseen templates and by rank classification), majority as a tick; groups apart."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = (("chance", "#bbbbbb", "chance"), ("untrained", "#f4a259", "untrained"),
            ("trained", "#2a9d8f", "trained (decoded)"),
            ("unseen", "#8ab17d", "trained, unseen templates"),
            ("rank_trained", "#264653", "trained (rank classification)"))
    shown = [b for b in bars if any(getattr(r, b[0]) is not None for r in rows)]
    width = 0.8 / len(shown)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(rows) + 2), 4.5))
    x, positions, previous = 0.0, [], None
    for r in rows:
        x += 1.0 if previous in (None, r.group) else 1.6
        positions.append(x)
        previous = r.group
    for k, (column, color, label) in enumerate(shown):
        ax.bar([p + (k - (len(shown) - 1) / 2) * width for p in positions],
               [getattr(r, column) or 0.0 for r in rows], width, color=color, label=label)
    ax.scatter(positions, [r.majority for r in rows], marker="_", s=300, color="black",
               label="majority answer", zorder=3)
    ax.set_xticks(positions, [_short(r) for r in rows], rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="accuracy (%)", ylim=(0, 100),
           title=textwrap.fill(verdict(rows), 150))
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _short(row: Row) -> str:
    """An axis label: the task name less a 'demo_' prefix, the group for held-out rows."""
    name = row.task.removeprefix("demo_")
    return f"{name} (held out)" if row.group == HELD_OUT else name


def as_json(rows: Sequence[Row]) -> dict[str, dict[str, Any]]:
    return {r.task: {k: v for k, v in asdict(r).items() if k != "task"} for r in rows}
