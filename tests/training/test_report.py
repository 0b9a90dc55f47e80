"""flan_jax.training.report: the lines the trainer prints about a run."""

from __future__ import annotations

import json
import warnings

import jax
import numpy as np
import pytest

from flan_jax.models import t5
from flan_jax.training import report


@pytest.fixture
def reporter(tmp_path):
    config = t5.get_config("tiny")
    return report.Reporter(tmp_path, config, train_steps=4, batch_size=2,
                           lengths={"inputs": 16, "targets": 8}, peak_flops=1e9, log_period=1,
                           progress_bar=False, first_step=0)


def test_inference_eval_line_has_no_nan(reporter, capsys):
    """Tasks without an accuracy (BLEU only) or with a NaN one (an empty split) are left
    out of the mean; with none left, the line says so rather than 'nan%'."""
    nan = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reporter.infer_eval(0, {"a": {"accuracy": 40.0}, "b": {"accuracy": nan},
                                "c": {"bleu": 3.0}})
        reporter.infer_eval(1, {"b": {"accuracy": nan}, "c": {"bleu": 3.0}})
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "step 0: inference eval, mean accuracy 40.0% over 1 tasks",
        "step 1: inference eval, 2 tasks, none with an accuracy (scores in metrics.jsonl)"]
    records = [json.loads(x) for x in (reporter.model_dir / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r.get("mean_accuracy") for r in records] == [40.0, None]


def test_where_things_are_lists_what_exists(tmp_path):
    assert report.where_things_are(tmp_path, "Finished.") == "Finished."
    for step in ("2", "4"):
        (tmp_path / step / "params").mkdir(parents=True)
    (tmp_path / "5.orbax-checkpoint-tmp").mkdir()  # an unfinished save is no checkpoint
    (tmp_path / "tb").mkdir()
    for name in ("metrics.jsonl", "results.json", "curves.png"):
        (tmp_path / name).write_text("")
    assert report.where_things_are(tmp_path, "Stopped.").splitlines() == [
        "Stopped.",
        f"  checkpoints  steps 2, 4 in {tmp_path} (`python -m flan_jax.infer --checkpoint "
        f"{tmp_path}` reads step 4)",
        f"  results      {tmp_path}/results.json",
        f"  plots        {tmp_path}/curves.png",
        f"  metrics      {tmp_path}/metrics.jsonl",
        f"  TensorBoard  tensorboard --logdir {tmp_path}/tb"]


def test_run_summary_is_five_lines_with_the_parameter_count(tmp_path):
    config = t5.get_config("tiny")
    params = t5.init_params(config, jax.random.key(0))
    count = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    text = report.run_summary(config, mixture="mix", num_tasks=3, train_steps=1000,
                              batch_size=64, lengths={"inputs": 512, "targets": 128},
                              model_dir=tmp_path)
    assert text.splitlines() == [
        f"model      T5, d_model 32, 2+2 layers, 4 heads, d_ff 64, vocab 384: {count:,} "
        "parameters",
        "mixture    mix (3 tasks)",
        "steps      1,000 steps x 64 sequences",
        "lengths    inputs 512, targets 128 tokens",
        f"MODEL_DIR  {tmp_path} (full configuration in config.gin; --verbose prints it)"]
