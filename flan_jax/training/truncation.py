"""How often the feature lengths cut each task's examples, measured on a sample of the
training stream before training: seqio trims inputs and targets silently, and a model
trained on answers cut short ("positive" -> "positiv") learns the cut answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import seqio

from flan_jax.data.datasource import as_numpy
from flan_jax.training.run_dir import write_text_atomic

REPORT_FILE = "truncation.json"


def count(mixture_or_task: str, lengths: Mapping[str, int], sample_size: int, *,
          split: str = "train", use_cached: bool = False) -> dict[str, dict[str, Any]]:
    """Per task of the first `sample_size` examples of the (seeded) stream: examples seen,
    and per feature how many are longer than `lengths` (with EOS) and the longest."""
    found = seqio.get_mixture_or_task(mixture_or_task)
    options = dict(sequence_length=None, split=split, use_cached=use_cached, shuffle=False)
    if isinstance(found, seqio.Mixture):
        options.update(num_epochs=None, seed=0, log_mixing_proportions=False)
        try:
            ds = found.get_dataset(**options, passthrough_features=["_task_name"])
        except TypeError:  # a plain seqio task without `_task_name`: count the mixture whole
            ds = found.get_dataset(**options)
    else:
        ds = found.get_dataset(**options, num_epochs=1)
    counts: dict[str, dict[str, Any]] = {}
    for example in as_numpy(ds.take(sample_size)):
        task = example["_task_name"].decode() if "_task_name" in example else found.name
        entry = counts.setdefault(task, {"examples": 0})
        entry["examples"] += 1
        for feature, limit in lengths.items():
            if feature not in example:
                continue
            n = len(example[feature])
            stats = entry.setdefault(feature, {"cut": 0, "longest": 0})
            stats["cut"] += int(n > limit)
            stats["longest"] = max(stats["longest"], n)
    return counts


def summary(counts: Mapping[str, Mapping[str, Any]], lengths: Mapping[str, int]) -> str:
    """A paragraph: every task with cut examples (how many, the longest), and the fix."""
    total = sum(c["examples"] for c in counts.values())
    head = (f"{total} training examples sampled from {len(counts)} task(s), lengths with EOS "
            f"against TASK_FEATURE_LENGTHS {dict(lengths)}")
    lines, longest_target = [], 0
    for task, entry in sorted(counts.items()):
        cuts = []
        for feature, limit in lengths.items():
            stats = entry.get(feature)
            if stats and stats["cut"]:
                share = 100.0 * stats["cut"] / entry["examples"]
                cuts.append(f"{feature} cut in {share:.1f}% of {entry['examples']} examples "
                            f"(longest {stats['longest']} > {limit} tokens)")
                if feature == "targets":
                    longest_target = max(longest_target, stats["longest"])
        if cuts:
            lines.append(f"  {task}: " + "; ".join(cuts))
    if not lines:
        return f"Truncation check: nothing cut ({head})."
    text = f"warning: truncation ({head}):\n" + "\n".join(lines)
    if longest_target:
        text += ("\nThe model will learn targets cut short; raise "
                 f"TASK_FEATURE_LENGTHS['targets'] to at least {longest_target}.")
    return text


def report(mixture_or_task: str, lengths: Mapping[str, int], sample_size: int,
           model_dir: Path, *, use_cached: bool = False) -> tuple[str, bool]:
    """Counts, writes MODEL_DIR/truncation.json; returns (summary, whether anything is cut)."""
    counts = count(mixture_or_task, lengths, sample_size, use_cached=use_cached)
    write_text_atomic(model_dir / REPORT_FILE, json.dumps(
        {"mixture_or_task": mixture_or_task, "split": "train", "sample_size": sample_size,
         "feature_lengths": dict(lengths), "tasks": counts}, indent=2) + "\n")
    cut = any(stats["cut"] for entry in counts.values() for key, stats in entry.items()
              if key != "examples")
    return summary(counts, lengths), cut
