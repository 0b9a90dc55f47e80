"""`make demo-scaling`: the demo's task-count scaling experiment (Chung et al. 2022, Fig. 4).

The demo configuration is trained once per mixture of `--mixtures` (default: 1, 3 and
all 9 training families, the same styles and budget each), every run in its own process
and directory under `--model_dir`. From each run's results.json it plots, against the
number of training families (0 = the untrained model):

- held-out families: mean decoded exact match and rank classification over the tasks
  held out of every run (the demo_heldout families);
- unseen templates: mean accuracy on the held-out templates of the families that run
  trained on.

    python -m flan_jax.demo.scaling [--gin_file=gin/runs/demo.gin] [--model_dir=DIR]
        [--mixtures=a,b,c] [--gin.NAME=VALUE ...]

Writes DIR/scaling.md, DIR/scaling.json and DIR/scaling.png and prints their paths.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flan_jax.errors import FlanJaxError
from flan_jax.training.summary import mean_known, percent_cell

DEFAULT_MIXTURES = ("demo_scaling_1_family", "demo_scaling_3_families", "demo_zs_submix")


def family_count(mixture: str) -> int:
    """Task definitions (families) a mixture draws from: its seqio tasks less the style."""
    import flan_jax.catalog  # noqa: F401
    from flan_jax.data.registry import task_families
    from flan_jax.training import pipeline

    return len(set(task_families(pipeline.task_names(mixture)).values()))


def summarize(runs: Mapping[int, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Points of the plot from {families: results.json}: one per run, plus the untrained
    model (0 families, read from the first run's `untrained` columns).

    Held-out tasks are those held out in every run (held out in the largest one); unseen
    templates are averaged over the tasks each run trained on.
    """
    largest = runs[max(runs)]["tasks"]
    held_out = [t for t, r in largest.items() if r["group"] == "held out"]
    first = runs[min(runs)]["tasks"]
    points = [{"families": 0,
               "held_out_decoded": mean_known([first[t]["untrained"] for t in held_out]),
               "held_out_rank": mean_known([first[t]["rank_untrained"] for t in held_out]),
               "unseen_templates": None}]
    for families in sorted(runs):
        tasks = runs[families]["tasks"]
        points.append({
            "families": families,
            "held_out_decoded": mean_known([tasks[t]["trained"] for t in held_out]),
            "held_out_rank": mean_known([tasks[t]["rank_trained"] for t in held_out]),
            "unseen_templates": mean_known([r["unseen"] for r in tasks.values()
                                       if r["group"] == "trained"]),
        })
    return points


def markdown(points: Sequence[Mapping[str, Any]], held_out_chance: float | None) -> str:
    lines = ["| training families | held-out families, decoded | held-out families, rank "
             "classification | unseen templates of the trained families |",
             "|---:|---:|---:|---:|"]
    for p in points:
        label = "0 (untrained)" if p["families"] == 0 else str(p["families"])
        lines.append(f"| {label} | {percent_cell(p['held_out_decoded'])} | "
                     f"{percent_cell(p['held_out_rank'])} | {percent_cell(p['unseen_templates'])} |")
    if held_out_chance is not None:
        lines.append(f"\nChance on the held-out families: {held_out_chance:.1f}%.")
    return "\n".join(lines)


def plot(points: Sequence[Mapping[str, Any]], held_out_chance: float | None, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, style in (("held_out_decoded", "held-out families, decoded", "o-"),
                              ("held_out_rank", "held-out families, rank classification", "s-"),
                              ("unseen_templates", "unseen templates (trained families)", "^-")):
        pts = [(p["families"], p[key]) for p in points if p[key] is not None]
        if pts:
            ax.plot(*zip(*pts), style, label=label)
    if held_out_chance is not None:
        ax.axhline(held_out_chance, color="gray", ls="--", label="held-out chance")
    ax.set(xlabel="training families (same budget)", ylabel="accuracy (%)", ylim=(0, 100),
           xticks=[p["families"] for p in points], title="Task-count scaling of the demo")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gin_file", default=None,
                   help="default: the demo configuration for the JAX backend")
    p.add_argument("--model_dir", default="runs/demo_scaling")
    p.add_argument("--mixtures", default=",".join(DEFAULT_MIXTURES))
    args, extra = p.parse_known_args(argv)
    if args.gin_file is None:
        import jax

        from flan_jax.demo.__main__ import demo_gin_file
        args.gin_file = demo_gin_file(jax.default_backend())
    model_dir = Path(args.model_dir).absolute()
    runs: dict[int, dict[str, Any]] = {}
    try:
        mixtures = [m for m in args.mixtures.split(",") if m]
        counts = {m: family_count(m) for m in mixtures}
    except (ValueError, KeyError) as e:
        raise SystemExit(f"flan_jax.demo.scaling: {e}") from None
    for mixture in mixtures:
        run_dir = model_dir / mixture
        print(f"\n=== {mixture}: {counts[mixture]} training families -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "flan_jax.train", f"--gin_file={args.gin_file}",
               f"--gin.MODEL_DIR='{run_dir}'", f"--gin.MIXTURE_OR_TASK_NAME='{mixture}'",
               *extra]
        if subprocess.run(cmd).returncode:
            print(f"flan_jax.demo.scaling: the run of {mixture} failed (command: "
                  f"{' '.join(cmd)})", file=sys.stderr)
            return 1
        runs[counts[mixture]] = json.loads((run_dir / "results.json").read_text())
        print(f"=== {mixture} done in {time.perf_counter() - t0:.0f}s", flush=True)
    points = summarize(runs)
    largest = runs[max(runs)]["tasks"]
    chance = mean_known([r["chance"] for r in largest.values() if r["group"] == "held out"])
    (model_dir / "scaling.json").write_text(json.dumps(points, indent=2) + "\n")
    table = markdown(points, chance)
    (model_dir / "scaling.md").write_text(
        "# Task-count scaling of the demo\n\nThe demo configuration trained on "
        f"{', '.join(f'{counts[m]} ({m})' for m in mixtures)} families, same budget.\n\n"
        + table + "\n")
    plot(points, chance, model_dir / "scaling.png")
    written = [str(model_dir / n) for n in ("scaling.md", "scaling.json", "scaling.png")]
    print(f"\n{table}\n\nWritten: {', '.join(written)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except FlanJaxError as e:
        print(f"flan_jax.demo.scaling: {e}", file=sys.stderr)
        sys.exit(2)
