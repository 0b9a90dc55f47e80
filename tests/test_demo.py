"""`make demo` (python -m flan_jax.demo): the demo configuration trained for two steps,
in a subprocess, and the structure of its report. The demo itself is the benchmark; here
only the plumbing is checked: every group of rows, the columns each group fills, the
files and the verdict. Also: the accelerator configuration parses and differs only in
size and length."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[Path, str]:
    model_dir = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
               FLAN_JAX_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))
    env.pop("XLA_FLAGS", None)
    bindings = [f"MODEL_DIR='{model_dir}'", "TRAIN_STEPS=2", "EVAL_PERIOD=2", "EVAL_STEPS=1",
                "train.infer_eval_examples=3", "train.checkpoint_period=2",
                "train.async_checkpoints=False", "train.progress_bar=False",
                "train.peak_flops=1e9",
                # a small vocabulary from a little text keeps the test fast
                "demo_vocabulary.size=512", "demo_vocabulary.examples_per_task=20"]
    result = subprocess.run([sys.executable, "-m", "flan_jax.demo",
                             *[f"--gin.{b}" for b in bindings]],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return model_dir, result.stdout


def test_demo_report_structure(demo_run):
    model_dir, out = demo_run
    assert "configuration gin/runs/demo.gin" in out
    results = json.loads((model_dir / "results.json").read_text())
    tasks = results["tasks"]
    groups = {g: [t for t, r in tasks.items() if r["group"] == g]
              for g in ("trained", "chain of thought", "held out")}
    # 8 training families with options, their held-out templates folded into their rows
    assert len(groups["trained"]) == 8
    assert all(t.endswith("_zs_opt") for t in groups["trained"])
    assert not any(t.endswith("_unseen") for t in groups["trained"])
    assert all(tasks[t]["unseen"] is not None for t in groups["trained"])
    # one CoT row, then the direct row of the same family
    assert groups["chain of thought"] == ["demo_counting_zs_cot_unseen",
                                          "demo_counting_zs_noopt_unseen"]
    # held-out families: decoded and rank classification, before and after
    assert len(groups["held out"]) == 4
    for t in groups["held out"]:
        row = tasks[t]
        assert None not in (row["chance"], row["majority"], row["untrained"], row["trained"],
                            row["rank_untrained"], row["rank_trained"])
    markdown = (model_dir / "results.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 8 + 1 + 2 + 4 + 1  # header, rows and the two mean rows
    assert len({line.count("|") for line in table}) == 1
    assert results["verdict"].startswith("trained mean ")
    assert "vs chance 31%" in results["verdict"]
    assert results["verdict"] in out and f"**Verdict:** {results['verdict']}" in markdown
    for name in ("results.json", "results.md", "results.png", "curves.png"):
        assert (model_dir / name).stat().st_size > 0
        assert str(model_dir / name) in out
    assert "flan_jax demo: finished in" in out


def test_accelerator_configuration_is_the_demo_scaled_up():
    import gin

    from flan_jax import catalog, train  # noqa: F401
    from flan_jax.data import vocab  # noqa: F401
    from flan_jax.data.demo import vocab as demo_vocab  # noqa: F401
    from flan_jax.training import optimizers, partitioning  # noqa: F401

    train.register()
    keys = ("%MIXTURE_OR_TASK_NAME", "train.infer_eval_tasks", "train.rank_eval_tasks",
            "train.vocabulary", "%TRAIN_STEPS", "%BATCH_SIZE", "t5.T5Config.d_model",
            "t5.T5Config.num_layers")

    def parse(name: str) -> dict:
        gin.clear_config()
        gin.parse_config_files_and_bindings([str(REPO / "gin/runs" / name)], [],
                                            finalize_config=False)
        return {k: gin.query_parameter(k) for k in keys}

    train.add_gin_search_paths()
    try:
        cpu, big = parse("demo.gin"), parse("demo_accelerator.gin")
    finally:
        gin.clear_config()
    for same in keys[:4]:
        assert str(big[same]) == str(cpu[same]), same
    for larger in keys[4:]:
        assert big[larger] > cpu[larger], larger
