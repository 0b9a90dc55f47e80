"""The trainer end to end, each run in a subprocess (fresh JAX, gin and signal state).

One tiny model (d_model 32, byte vocabulary) on one demo task; a run takes ~20 s here,
most of it imports and compilation.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, TINY_GIN, train_env


@pytest.fixture(scope="module")
def gin_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gin") / "tiny.gin"
    path.write_text(TINY_GIN)
    return path


def _cmd(gin_file: Path, model_dir: Path, *bindings: str) -> list[str]:
    return [sys.executable, "-m", "flan_jax.train", f"--gin_file={gin_file}",
            f"--gin.MODEL_DIR='{model_dir}'", *[f"--gin.{b}" for b in bindings]]


def _run(gin_file: Path, model_dir: Path, *bindings: str) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(gin_file, model_dir, *bindings), cwd=REPO, env=train_env(),
                          capture_output=True, text=True, timeout=600)


def _train_losses(model_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(x) for x in (model_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def _params(model_dir: Path) -> dict:
    from flan_jax.interop.checkpoints import load_any
    from flan_jax.interop.common import flatten
    params, _ = load_any(model_dir)
    return flatten(params)


@pytest.fixture(scope="module")
def full_process(gin_file, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """An uninterrupted 6-step run with evaluation (the reference and the smoke test):
    its MODEL_DIR and what it printed."""
    model_dir = tmp_path_factory.mktemp("full")
    result = _run(gin_file, model_dir, "train.async_checkpoints=False",
                  "train.infer_eval_tasks=['demo_comparison_zs_opt','demo_parity_zs_opt']",
                  "train.infer_eval_examples=4", "train.plot=True")
    assert result.returncode == 0, result.stderr[-3000:]
    return model_dir, result


@pytest.fixture(scope="module")
def full_run(full_process) -> Path:
    return full_process[0]


def test_smoke_train_and_eval(full_run):
    for name in ("config.json", "config.gin", "operative_config.gin", "metrics.jsonl",
                 "results.json", "curves.png", "tb", "3", "6"):
        assert (full_run / name).exists(), name
    results = json.loads((full_run / "results.json").read_text())
    assert set(results["tasks"]) == {"demo_comparison_zs_opt", "demo_parity_zs_opt"}
    # Trained on demo_comparison_zs_opt only: parity is reported as held out.
    assert results["tasks"]["demo_comparison_zs_opt"]["group"] == "trained"
    assert results["tasks"]["demo_parity_zs_opt"]["group"] == "held out"
    records = [json.loads(x) for x in (full_run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    for key in ("steps_per_second", "seqs_per_second", "target_tokens_per_second",
                "nonpadding_fraction", "mfu"):
        assert train[-1][key] > 0
    assert {r["step"] for r in records if r["kind"] == "eval"} == {0, 3, 6}
    assert {r["step"] for r in records if r["kind"] == "infer"} == {0, 3, 6}
    params = _params(full_run)  # the run dir loads like any flan_jax checkpoint
    assert params["decoder/logits_dense/kernel"].shape == (32, 384)


def test_quiet_start_a_summary_and_where_things_are_at_the_end(full_process):
    model_dir, result = full_process
    # On stderr, only the truncation warning (the tiny lengths cut the inputs): not
    # TensorFlow's start-up notes (absl::InitializeLog, oneDNN, CUDA) nor seqio's.
    warning, *details = result.stderr.splitlines()
    assert warning.startswith("warning: truncation (32 training examples")
    assert details and all(line.startswith("  demo_comparison_zs_opt: ") for line in details)
    out = result.stdout
    assert "Gin configuration" not in out and "train.train.batch_size" not in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    count = sum(int(np.prod(a.shape)) for a in _params(model_dir).values())
    assert lines[start].endswith(f": {count:,} parameters")
    assert lines[start + 1:start + 5] == [
        "mixture    demo_comparison_zs_opt (1 task)",
        "steps      6 steps x 8 sequences",
        "lengths    inputs 64, targets 16 tokens",
        f"MODEL_DIR  {model_dir} (full configuration in config.gin; --verbose prints it)"]
    end = lines.index("Finished: step 6 of 6.")
    assert lines[end + 1:] == [
        f"  checkpoints  steps 3, 6 in {model_dir} (`python -m flan_jax.infer --checkpoint "
        f"{model_dir}` reads step 6)",
        f"  results      {model_dir}/results.md, {model_dir}/results.json",
        f"  plots        {model_dir}/results.png, {model_dir}/curves.png",
        f"  metrics      {model_dir}/metrics.jsonl",
        f"  TensorBoard  tensorboard --logdir {model_dir}/tb"]
    assert out.count(f"{model_dir}/results.md") == 1  # said once, at the end


def test_verbose_prints_the_gin_configuration(gin_file, tmp_path):
    result = subprocess.run(_cmd(gin_file, tmp_path, "MIXTURE_OR_TASK_NAME='demo_submx'")
                            + ["--verbose"], cwd=REPO, env=train_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2 and "unknown task or mixture" in result.stderr
    assert "Gin configuration:" in result.stdout
    assert "train.train.batch_size = %BATCH_SIZE" in result.stdout


def test_run_exports_to_hugging_face_with_the_vocabulary_it_recorded(full_run, tmp_path,
                                                                     capsys):
    """The run records its vocabulary; `convert --to hf MODEL_DIR` needs no --vocab, and
    transformers' Auto classes then answer a prompt as flan_jax does."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import seqio

    from flan_jax import convert
    from flan_jax.interop.checkpoints import load_any
    from flan_jax.models import decoding

    assert json.loads((full_run / "vocabulary.json").read_text()) == {"vocabulary": "byte"}
    assert convert.main(["--to", "hf", str(full_run), str(tmp_path / "hf")]) == 0
    assert (f"tokenizer: ByT5Tokenizer (UTF-8 bytes, as seqio.ByteVocabulary; 125 extra ids "
            f"up to the model's vocab_size); vocabulary from {full_run / 'vocabulary.json'}"
            in capsys.readouterr().out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    prompt = "Which is larger, 12 or 7?\nOPTIONS:\n- 12\n- 7"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == [*seqio.ByteVocabulary().encode(prompt), 1]
    params, config = load_any(full_run)
    ours = decoding.greedy_decode(params, ids.numpy().astype(np.int32), config=config,
                                  max_decode_length=6)
    expected = np.asarray(ours.tokens)[0].tolist()
    with torch.no_grad():
        theirs = model.generate(ids, max_new_tokens=6, do_sample=False, num_beams=1)[0, 1:]
    assert theirs.tolist() == expected[:len(theirs)]


def test_exact_resume_after_sigkill(gin_file, full_run, tmp_path):
    killed = _run(gin_file, tmp_path, "train.async_checkpoints=False",
                  "train.debug_kill_at_step=5")
    assert killed.returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.isdigit()) == ["3"]
    resumed = _run(gin_file, tmp_path, "train.async_checkpoints=False")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resumed from" in resumed.stdout
    assert _train_losses(tmp_path) == _train_losses(full_run)
    ours, reference = _params(tmp_path), _params(full_run)
    assert ours.keys() == reference.keys()
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)


def test_sigterm_saves_and_exits(gin_file, tmp_path):
    proc = subprocess.Popen(_cmd(gin_file, tmp_path, "TRAIN_STEPS=100000",
                                 "train.checkpoint_period=100000"),
                            cwd=REPO, env=train_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"kind": "train"' in metrics.read_text():
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "SIGTERM: saved a checkpoint" in out
    assert f"  TensorBoard  tensorboard --logdir {tmp_path}/tb" in out
    steps = [int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()]
    assert len(steps) == 1 and steps[0] >= 1
    assert _params(tmp_path)


def test_non_finite_loss_stops(gin_file, tmp_path):
    result = _run(gin_file, tmp_path, "LEARNING_RATE=1e30", "TRAIN_STEPS=30")
    assert result.returncode == 1, result.stderr[-3000:]
    assert "non-finite loss" in result.stderr
    assert "step None" not in result.stderr
    assert "lower the learning rate (now 1e+30)" in result.stderr  # diverged after updates
    assert "Traceback" not in result.stderr


def test_gin_errors(gin_file, tmp_path):
    from flan_jax import train

    def run(*args):
        return subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from flan_jax import train
            sys.exit(train.main({list(args)!r}))""")], cwd=REPO, env=train_env(),
            capture_output=True, text=True, timeout=300)

    unknown = run(f"--gin_file={gin_file}", f"--gin.MODEL_DIR='{tmp_path}'",
                  "--gin.train.not_a_parameter=1")
    missing = run(f"--gin_file={gin_file}")
    for result in (unknown, missing):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
    assert "not_a_parameter" in unknown.stderr
    assert "MODEL_DIR" in missing.stderr and "--gin.MODEL_DIR" in missing.stderr
    with pytest.raises(ValueError, match="unknown flag"):
        train.parse_flags(["--bogus"])


BAD_ROWS_YAML = """
tasks:
  - name: bad_rows_toy
    collection: bad_rows_toy
    source: {files: tsv, columns: [word, reversed], splits: {train: rows.tsv}}
    templates:
      noopt: [{input: "Reverse {word}.", target: "{reversed}"}]
    styles: [zs_noopt]
"""


def test_data_errors_stop_in_one_paragraph_and_skipped_rows_are_reported(gin_file, tmp_path):
    """A malformed row within the limit is skipped and reported (printed, data_report.json);
    past the limit, or with an unknown mixture name, the run stops with one paragraph."""
    words = [f"w{i:02d}x" for i in range(40)]
    rows = [f"{w}\t{w[::-1]}" for w in words]
    rows[6] = "w06x"  # line 7: the second column is missing
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "bad.yaml").write_text(BAD_ROWS_YAML)
    (tmp_path / "tasks" / "rows.tsv").write_text("\n".join(rows) + "\n")
    env = dict(train_env(), FLAN_JAX_TASK_PATHS=str(tmp_path / "tasks"))

    def run(model_dir: Path, *bindings: str) -> subprocess.CompletedProcess:
        return subprocess.run(_cmd(gin_file, model_dir, "EVAL_STEPS=0", *bindings), cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=600)

    ok = run(tmp_path / "ok", "MIXTURE_OR_TASK_NAME='bad_rows_toy_zs_noopt'", "TRAIN_STEPS=1")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "Rows skipped so far" in ok.stdout and "rows.tsv line 7: expected 2 columns" in ok.stdout
    report = json.loads((tmp_path / "ok" / "data_report.json").read_text())
    assert [(r["task"], r["split"], r["malformed"], r["empty"]) for r in report] == \
        [("bad_rows_toy", "train", 1, 0)]
    assert report[0]["rows"] == 40 and "rows.tsv line 7" in report[0]["problems"][0]

    rows[20] = rows[30] = "only-one-column"  # 3 of 40 rows: over the default 5% limit
    (tmp_path / "tasks" / "rows.tsv").write_text("\n".join(rows) + "\n")
    over = run(tmp_path / "over", "MIXTURE_OR_TASK_NAME='bad_rows_toy_zs_noopt'", "TRAIN_STEPS=1")
    assert over.returncode == 2, over.stderr[-3000:]
    assert "Traceback" not in over.stderr
    # TensorFlow's import notes (I0000 ...) aside, the one line is the message.
    message = [x for x in over.stderr.strip().splitlines() if "bad_rows_toy" in x]
    assert len(message) == 1 and message[0].startswith("flan_jax.train: task 'bad_rows_toy'")
    assert "In call to configurable" not in over.stderr
    assert "3 of the 40 rows read are malformed, more than the limit of 5%" in message[0]
    assert "rows.tsv line 7: expected 2 columns (word, reversed), found 1" in message[0]

    typo = run(tmp_path / "typo", "MIXTURE_OR_TASK_NAME='demo_submx'", "TRAIN_STEPS=1")
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert "unknown task or mixture 'demo_submx'" in typo.stderr
    assert "did you mean demo_submix" in typo.stderr


MESH_SCRIPT = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import jax, numpy as np
from flan_jax.training import optimizers, partitioning
from flan_jax.models.config import get_config
from flan_jax.training.step import TrainState, init_train_state, make_train_step

config = get_config("tiny", dropout_rate=0.1)
opt = optimizers.make_optimizer(learning_rate=0.01)
rng = np.random.default_rng(0)
batches = []
for _ in range(3):
    t = rng.integers(2, 128, (8, 16)).astype(np.int32)
    batches.append(dict(encoder_input_tokens=t, decoder_target_tokens=t,
                        decoder_input_tokens=np.pad(t[:, :-1], ((0, 0), (1, 0))),
                        decoder_loss_weights=np.ones_like(t)))
for shape in [(1, 1), (8, 1), (4, 2), (2, 4)]:
    mesh = partitioning.make_mesh(mesh_shape=shape, devices=jax.devices()[:shape[0] * shape[1]])
    abstract = jax.eval_shape(lambda: init_train_state(config, opt, jax.random.key(0)))
    sh = TrainState(partitioning.replicated(mesh), partitioning.param_shardings(config, mesh),
                    partitioning.state_shardings(abstract.opt_state, config, mesh))
    state = jax.jit(lambda: init_train_state(config, opt, jax.random.key(0)),
                    out_shardings=sh)()
    step = jax.jit(make_train_step(config, opt, num_microbatches=2),
                   in_shardings=(sh, partitioning.batch_sharding(mesh), None),
                   out_shardings=(sh, None))
    losses = []
    for b in batches:
        state, m = step(state, partitioning.global_batch(b, mesh), jax.random.key(1))
        losses.append(float(m["loss"]))
    spec = state.params["decoder"]["layers_0"]["mlp"]["wi_0"]["kernel"].sharding.spec
    print("LOSSES", shape, losses, spec)
"""


def test_meshes_give_the_same_losses():
    result = subprocess.run([sys.executable, "-c", MESH_SCRIPT], cwd=REPO, env=train_env(),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [x for x in result.stdout.splitlines() if x.startswith("LOSSES")]
    assert len(lines) == 4
    losses = [eval(x.split(" ", 1)[1].split("]")[0].split(") ", 1)[1] + "]") for x in lines]
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=2e-5)
    assert "'model'" in lines[2] or "model" in lines[2]  # 4x2: mlp kernels split on 'model'
