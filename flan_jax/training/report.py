"""Training reports: progress bar, metrics JSONL, TensorBoard summaries, results, PNG plot.

Everything goes to MODEL_DIR: `metrics.jsonl` (one JSON object per record: `step`,
`kind` in {train, eval, infer}, metric values), TensorBoard event files under `tb/`
(`tf.summary`), `results.json` and `curves.png` at the end. Timing metrics follow t5x:
steps/s, seqs/s, target tokens/s (non-padding), and the non-padding fraction of the
target positions. MFU = model FLOPs / peak FLOP/s (`flan_jax.training.flops`); the peak is
measured with a matmul in the model's activation dtype at start unless `peak_flops` is
given.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tqdm import tqdm

from flan_jax.interop.checkpoints import training_steps
from flan_jax.interop.common import flatten
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import abstract_params
from flan_jax.training.flops import flops_per_step, measure_peak_flops
from flan_jax.training.run_dir import read_jsonl, write_text_atomic

# tf.summary.scalar lives in the tensorboard package; the TF core op with the scalars
# plugin's metadata writes the same event without that dependency.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
    data_class=summary_pb2.DATA_CLASS_SCALAR)


def count_params(config: T5Config) -> int:
    """The model's number of parameters."""
    return sum(int(np.prod(leaf.shape)) for leaf in flatten(abstract_params(config)).values())


def run_summary(config: T5Config, *, mixture: str, num_tasks: int, train_steps: int,
                batch_size: int, lengths: Mapping[str, int], model_dir: Path) -> str:
    """Five lines on what is trained, on what, for how long, and where it goes: what the
    trainer prints at start instead of the whole gin configuration."""
    model = (f"T5, d_model {config.d_model}, {config.num_layers}+{config.num_decoder_layers} "
             f"layers, {config.num_heads} heads, d_ff {config.d_ff}, vocab {config.vocab_size:,}"
             f": {count_params(config):,} parameters")
    rows = (("model", model),
            ("mixture", f"{mixture} ({num_tasks} task{'s' if num_tasks != 1 else ''})"),
            ("steps", f"{train_steps:,} steps x {batch_size} sequences"),
            ("lengths", ", ".join(f"{k} {v}" for k, v in lengths.items()) + " tokens"),
            ("MODEL_DIR", f"{model_dir} (full configuration in config.gin; --verbose prints "
                          "it)"))
    return "\n".join(f"{label:<10} {text}" for label, text in rows)


def where_things_are(model_dir: Path, headline: str) -> str:
    """`headline`, then where a run's outputs are, those that exist: checkpoint steps,
    results, plots, metrics, and the TensorBoard command."""
    d = Path(model_dir)
    steps = training_steps(d)
    found = [("checkpoints", f"steps {', '.join(map(str, steps))} in {d} (`python -m "
                             f"flan_jax.infer --checkpoint {d}` reads step {steps[-1]})"
              if steps else "")]
    named = [d / n for n in ("results.md", "results.json") if (d / n).is_file()]
    found.append(("results", ", ".join(map(str, named))))
    plots = [d / n for n in ("results.png", "curves.png") if (d / n).is_file()]
    found.append(("plots", ", ".join(map(str, plots))))
    found.append(("metrics", str(d / "metrics.jsonl") if (d / "metrics.jsonl").is_file() else ""))
    found.append(("TensorBoard", f"tensorboard --logdir {d / 'tb'}" if (d / "tb").is_dir()
                  else ""))
    return "\n".join([headline, *(f"  {label:<12} {text}" for label, text in found if text)])


class Reporter:
    def __init__(self, model_dir: Path, config: T5Config, *, train_steps: int, batch_size: int,
                 lengths: Mapping[str, int], peak_flops: float | None, log_period: int,
                 progress_bar: bool, first_step: int):
        self.model_dir = Path(model_dir)
        self.primary = jax.process_index() == 0
        self.batch_size, self.lengths, self.log_period = batch_size, dict(lengths), log_period
        self.step_flops = flops_per_step(config, batch_size, lengths)
        self.num_params = count_params(config)
        self.peak = peak_flops or measure_peak_flops(config.activation_dtype,
                                                      remat_policy=config.remat_policy)
        self.jsonl = self.model_dir / "metrics.jsonl"
        self.records = self._read_records(first_step)
        self.writer = tf.summary.create_file_writer(str(self.model_dir / "tb")) \
            if self.primary else None
        self.bar = tqdm(total=train_steps, initial=first_step, unit="step", dynamic_ncols=True,
                        disable=not (progress_bar and self.primary))
        self.window: dict[str, float] = {}
        self.window_steps = 0
        self.window_start = time.perf_counter()
        self.last_train: dict[str, float] = {}

    def _read_records(self, first_step: int) -> list[dict]:
        """Records of earlier runs up to `first_step` (later ones were not checkpointed);
        a last line cut short by a crash is dropped with a note."""
        if not self.jsonl.exists():
            return []
        records, note = read_jsonl(self.jsonl)
        if note and self.primary:
            print(note, file=sys.stderr)
        records = [r for r in records if r["step"] <= first_step]
        if self.primary:
            write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in records))
        return records

    def _write(self, record: dict) -> None:
        self.records.append(record)
        if not self.primary:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps(record) + "\n")
        with self.writer.as_default(step=record["step"]):
            for k, v in record.items():
                if k not in ("step", "kind") and isinstance(v, int | float):
                    tf.summary.write(f"{record['kind']}/{k}", tf.constant(float(v)),
                                     metadata=_SCALAR_METADATA)
        self.writer.flush()

    def train(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.window[k] = self.window.get(k, 0.0) + v
        self.window_steps += 1
        elapsed = time.perf_counter() - self.window_start
        n = self.window_steps
        tokens_per_s = self.window["target_tokens"] / max(elapsed, 1e-9)
        mfu = self.step_flops * n / max(elapsed, 1e-9) / self.peak
        self.bar.update(1)
        ce = metrics["unnormalized_loss"] / max(metrics["weight_sum"], 1.0)
        self.bar.set_postfix(loss=f"{ce:.3f}", tok_s=f"{tokens_per_s:,.0f}",
                             mfu=f"{100 * mfu:.1f}%", refresh=False)
        if step % self.log_period and step != self.bar.total:
            return
        w = self.window
        record = {
            "step": step, "kind": "train",
            "loss": w["loss"] / n,
            "z_loss": w["z_loss"] / n,
            "cross_entropy_per_token": w["unnormalized_loss"] / max(w["weight_sum"], 1.0),
            "accuracy": 100.0 * w["correct"] / max(w["weight_sum"], 1.0),
            "learning_rate": metrics["learning_rate"],
            "grad_norm": w["grad_norm"] / n,
            "steps_per_second": n / elapsed,
            "seqs_per_second": n * self.batch_size / elapsed,
            "target_tokens_per_second": tokens_per_s,
            "input_tokens_per_second": w["input_tokens"] / elapsed,
            "nonpadding_fraction": w["target_tokens"] / (
                n * self.batch_size * self.lengths["targets"]),
            "mfu": mfu,
        }
        self.last_train = record
        self._write(record)
        self.window, self.window_steps = {}, 0
        self.window_start = time.perf_counter()

    def eval_loss(self, step: int, totals: Mapping[str, float], num_batches: int) -> None:
        record = {"step": step, "kind": "eval",
                  "loss": totals["loss"] / num_batches,
                  "cross_entropy_per_token": totals["unnormalized_loss"] / max(
                      totals["weight_sum"], 1.0),
                  "accuracy": 100.0 * totals["correct"] / max(totals["weight_sum"], 1.0)}
        self._write(record)
        self.bar.write(f"step {step}: eval loss {record['loss']:.4f}, "
                       f"token accuracy {record['accuracy']:.1f}%")
        self.window_start = time.perf_counter()  # eval time is not training time

    def infer_eval(self, step: int, results: Mapping[str, Mapping[str, float]]) -> None:
        record: dict[str, Any] = {"step": step, "kind": "infer"}
        for task, scores in results.items():
            for metric, value in scores.items():
                record[f"{task}/{metric}"] = value
        accs = [s["accuracy"] for s in results.values()
                if math.isfinite(s.get("accuracy", math.nan))]
        if accs:
            record["mean_accuracy"] = sum(accs) / len(accs)
            line = f"mean accuracy {record['mean_accuracy']:.1f}% over {len(accs)} tasks"
        else:
            line = f"{len(results)} tasks, none with an accuracy (scores in {self.jsonl.name})"
        self._write(record)
        self.bar.write(f"step {step}: inference eval, {line}")
        self.window_start = time.perf_counter()

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.flush()

    def finish(self, eval_sets: Mapping[str, Any], plot: bool = True,
               trained_on: Collection[str] = (), families: Mapping[str, str] | None = None,
               note: str = "") -> dict[str, Any]:
        """Prints the results table (`flan_jax.training.summary`: tasks of the families
        of `trained_on`, chain of thought and held-out tasks apart) and its verdict; writes
        results.json, results.md (headed by `note`), results.png and curves.png
        (`where_things_are` says where)."""
        from flan_jax.training import summary as training_summary

        infer = [r for r in self.records if r["kind"] == "infer"]
        summary: dict[str, Any] = {"train": self.last_train}
        evals = [r for r in self.records if r["kind"] == "eval"]
        if evals:
            summary["eval"] = evals[-1]
        rows = []
        if infer and eval_sets:
            def per_task(r):
                return {t: {k.split("/", 1)[1]: v for k, v in r.items()
                            if k.startswith(t + "/")} for t in eval_sets}
            first, last = infer[0]["step"], infer[-1]["step"]
            rows = training_summary.build_rows(eval_sets, per_task(infer[0]),
                                               per_task(infer[-1]), trained_on, families)
            table, line = training_summary.markdown(rows), training_summary.verdict(rows)
            print(f"\nResults: step {first} (untrained) -> step {last} (trained); accuracy "
                  f"in %, decoded exact match unless marked rank cls.:\n\n{table}\n\n{line}")
            summary["tasks"] = training_summary.as_json(rows)
            summary["verdict"] = line
        if not self.primary:
            return summary
        (self.model_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        if rows:
            (self.model_dir / "results.md").write_text(training_summary.results_markdown(
                rows, first, last, note) + "\n")
        if plot:
            if rows:
                training_summary.plot(rows, self.model_dir / "results.png")
            self.plot(self.model_dir / "curves.png")
        return summary

    def plot(self, path: Path) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        def series(kind: str, key: str) -> tuple[list, list]:
            pts = [(r["step"], r[key]) for r in self.records if r["kind"] == kind and key in r]
            return [p[0] for p in pts], [p[1] for p in pts]

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for kind, label in (("train", "train"), ("eval", "validation")):
            ax1.plot(*series(kind, "cross_entropy_per_token"), label=label)
            ax2.plot(*series(kind, "accuracy"), label=f"{label} token accuracy")
        ax2.plot(*series("infer", "mean_accuracy"), "o-", label="decoded answer accuracy")
        ax1.set(xlabel="step", ylabel="cross-entropy per target token", title="Loss")
        ax2.set(xlabel="step", ylabel="%", title="Accuracy")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
