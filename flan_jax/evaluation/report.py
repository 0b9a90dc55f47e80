"""Writes evaluation results: Markdown and CSV (published Flan-T5 rows beside ours), a PNG
bar chart (when matplotlib is installed) and every prediction as JSONL."""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_jax.evaluation.scoring import CHANCE, COMPONENTS, PUBLISHED, normalized_average

log = logging.getLogger(__name__)

LABELS = {"norm_avg": "Norm. avg", "mmlu_direct": "MMLU direct", "mmlu_cot": "MMLU CoT",
          "bbh_direct": "BBH direct", "bbh_cot": "BBH CoT", "tydiqa": "TyDiQA", "mgsm": "MGSM"}


@dataclasses.dataclass
class TaskResult:
    """The score of one task (subject, BBH file or language) in one component."""

    component: str  # e.g. "bbh_cot", "mmlu_direct_rank", "mgsm_en", "bbh_cot_sc"
    task: str
    n: int
    score: float  # accuracy or exact match, percent
    f1: float | None = None
    agreement: float | None = None  # self-consistency: mean share of samples that agree


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def summary_rows(ours: Mapping[str, float | None], name: str) -> list[dict[str, Any]]:
    rows = [{"model": model, **values} for model, values in PUBLISHED.items()]
    rows.append({"model": name, "norm_avg": normalized_average(ours),
                 **{c: ours.get(c) for c in COMPONENTS}})
    return rows


def write_predictions(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.2f}" if isinstance(v, float) else v)
                             for k, v in row.items()})


def write_markdown(path: Path, name: str, components: Mapping[str, float | None],
                   results: Sequence[TaskResult], settings: Mapping[str, Any],
                   notes: Sequence[str]) -> None:
    cols = ["norm_avg", *COMPONENTS]
    lines = [f"# Evaluation of {name}", ""]
    lines += [f"- {k}: `{v}`" for k, v in settings.items()]
    lines += ["", "## Paper components (Chung et al. 2022, Table 5 rows published)", "",
              "| Model | " + " | ".join(LABELS[c] for c in cols) + " |",
              "|---" * (len(cols) + 1) + "|"]
    for row in summary_rows(components, f"**{name} (ours)**"):
        lines.append(f"| {row['model']} | " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    lines += ["", "Normalized average: (score − chance) / (100 − chance) per component, then the "
              "mean; chance rates: " + ", ".join(f"{LABELS[c]} {v:g}" for c, v in CHANCE.items())
              + ". It needs all six components.", ""]
    extra = {c: v for c, v in components.items() if c not in COMPONENTS}
    if extra:
        lines += ["## Other components", "", "| Component | Score |", "|---|---|"]
        lines += [f"| {c} | {_fmt(v)} |" for c, v in sorted(extra.items())]
        lines.append("")
    lines += ["## Per task", "", "| Component | Task | n | Score | F1 | Agreement |",
              "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.component} | {r.task} | {r.n} | {_fmt(r.score)} | {_fmt(r.f1)} | "
                     f"{_fmt(None if r.agreement is None else 100 * r.agreement)} |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_chart(path: Path, name: str, components: Mapping[str, float | None]) -> str | None:
    """A grouped bar chart of the six components, published sizes beside ours.
    Returns a message instead of writing when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the PNG chart (pip install matplotlib)"
    models = [*PUBLISHED, name]
    values = [[PUBLISHED[m][c] for c in COMPONENTS] for m in PUBLISHED]
    values.append([components.get(c) or 0.0 for c in COMPONENTS])
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(models)
    for i, (model, row) in enumerate(zip(models, values)):
        xs = [j + i * width for j in range(len(COMPONENTS))]
        ax.bar(xs, row, width, label=model)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(COMPONENTS))])
    ax.set_xticklabels([LABELS[c] for c in COMPONENTS])
    ax.set_ylabel("score (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def write_all(out_dir: str | Path, name: str, components: Mapping[str, float | None],
              results: Sequence[TaskResult], predictions: Iterable[Mapping[str, Any]],
              settings: Mapping[str, Any], notes: Sequence[str]) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": out / "predictions.jsonl", "markdown": out / "results.md",
             "csv": out / "results.csv", "tasks_csv": out / "results_tasks.csv",
             "png": out / "results.png"}
    write_predictions(paths["predictions"], predictions)
    write_csv(paths["csv"], summary_rows(components, name), ["model", "norm_avg", *COMPONENTS])
    write_csv(paths["tasks_csv"], [dataclasses.asdict(r) for r in results],
              [f.name for f in dataclasses.fields(TaskResult)])
    notes = list(notes)
    message = write_chart(paths["png"], name, components)
    if message:
        notes.append(message)
        log.warning(message)
        del paths["png"]
    write_markdown(paths["markdown"], name, components, results, settings, notes)
    return paths
