"""flan_jax.infer: prompts and task predictions from a tiny random Hugging Face checkpoint."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import seqio

from flan_jax import infer
from flan_jax.interop import checkpoints
from flan_jax.models import decoding

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["What is 2 + 3?", "Translate to German: good morning", "x"]


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A random T5 v1.1-style model (byte vocabulary fits: 384 >= 259) saved by transformers."""
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=384, d_model=32, d_ff=64, d_kv=8, num_layers=2, num_decoder_layers=2,
        num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    path = tmp_path_factory.mktemp("hf")
    model.save_pretrained(path)
    return path


def test_prompts_equal_greedy_decoding_and_hf_generate(hf_dir, capsys):
    assert infer.main(["--checkpoint", str(hf_dir), "--vocab", "byte", "--max_decode_length",
                       "12", "--batch_size", "2"] + [a for p in PROMPTS for a in ("--prompt", p)]) == 0
    printed = capsys.readouterr().out.splitlines()

    params, config = checkpoints.load_any(hf_dir)
    vocab = seqio.ByteVocabulary()
    hf_model = transformers.T5ForConditionalGeneration.from_pretrained(hf_dir).eval()
    for prompt, line in zip(PROMPTS, printed, strict=True):
        ids = infer.encode_prompt(vocab, prompt, 512)
        ours = decoding.greedy_decode(params, np.array([ids], np.int32), config=config,
                                      max_decode_length=12)
        expected = infer.strip_eos(np.asarray(ours.tokens)[0])
        assert line == vocab.decode(expected)
        hf = hf_model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                               num_beams=1)[0, 1:].tolist()
        assert infer.strip_eos(hf) == expected


def test_prompt_from_the_current_t5x_layout(capsys):
    """flan_jax.infer on a checkpoint the real t5x wrote (orbax `state/`)."""
    fixture = REPO / "tests" / "fixtures" / "t5x_orbax_tiny"
    assert infer.main(["--checkpoint", str(fixture), "--vocab", "byte", "--max_decode_length",
                       "6", "--prompt", "hello"]) == 0
    params, config = checkpoints.load_any(fixture)
    vocab = seqio.ByteVocabulary()
    ours = decoding.greedy_decode(params, np.array([infer.encode_prompt(vocab, "hello", 512)],
                                                   np.int32), config=config, max_decode_length=6)
    expected = vocab.decode(infer.strip_eos(np.asarray(ours.tokens)[0]))
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [expected]
    assert printed.err.splitlines() == [
        f"flan_jax.infer: loaded {fixture}/checkpoint_4 (t5x checkpoint, step 4)"]


def test_says_which_checkpoint_and_step_it_loaded(hf_dir, tmp_path, capsys):
    """A training run directory: its latest step; a Hugging Face directory: no step."""
    import jax

    from flan_jax.models import t5

    config = t5.get_config("tiny")
    params = t5.init_params(config, jax.random.key(0))
    for step in (3, 7):  # as flan_jax.train leaves MODEL_DIR: numbered steps holding params/
        checkpoints.save_params(tmp_path / "run" / str(step), params, config)
    base = ["--vocab", "byte", "--max_decode_length", "2", "--prompt", "x"]
    assert infer.main(["--checkpoint", str(tmp_path / "run"), *base]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"flan_jax.infer: loaded {tmp_path}/run/7 (flan_jax checkpoint, step 7)"]
    assert infer.main(["--checkpoint", str(tmp_path / "run" / "3"), *base]) == 0
    assert "loaded " + str(tmp_path / "run" / "3") + " (flan_jax checkpoint, step 3)" \
        in capsys.readouterr().err
    assert infer.main(["--checkpoint", str(hf_dir), *base]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"flan_jax.infer: loaded {hf_dir} (Hugging Face checkpoint, no step recorded)"]


def test_beam_and_sampling_run(hf_dir, capsys):
    base = ["--checkpoint", str(hf_dir), "--vocab", "byte", "--max_decode_length", "6",
            "--prompt", "hello", "--json"]
    assert infer.main(base + ["--beam", "3"]) == 0
    beam = json.loads(capsys.readouterr().out)
    assert beam["inputs"] == "hello" and beam["score"] <= 0
    assert infer.main(base + ["--temperature", "0.7", "--top_k", "20", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert infer.main(base + ["--temperature", "0.7", "--top_k", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first  # seeded: reproducible


def test_task_split_jsonl_has_one_line_per_example_with_metadata(hf_dir, tmp_path):
    out = tmp_path / "preds.jsonl"
    assert infer.main(["--checkpoint", str(hf_dir), "--task", "demo_arithmetic_zs_noopt",
                       "--split", "validation", "--max_examples", "5", "--output", str(out),
                       "--max_decode_length", "4", "--batch_size", "4"]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 5
    for record in lines:
        assert {"inputs", "targets", "prediction", "score"} <= set(record)
        assert record["_task_name"] == "demo_arithmetic_zs_noopt"
        assert record["_template_type"] == "zs_noopt"
        assert isinstance(record["_example_index"], int)
    assert [r["_example_index"] for r in lines] == sorted(r["_example_index"] for r in lines)


def test_gin_file_and_clear_errors(hf_dir, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert infer.main(["--gin_file", str(REPO / "gin/runs/infer.gin"),
                       f"--gin.CHECKPOINT_PATH='{hf_dir}'", "--gin.VOCABULARY='byte'",
                       "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 3}",
                       f"--gin.INFER_OUTPUT_PATH='{out}'", "--prompt", "hi"]) == 0
    assert json.loads(out.read_text())["inputs"] == "hi"

    assert infer.main(["--checkpoint", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert infer.main(["--gin_file", str(REPO / "gin/runs/infer.gin"), "--prompt", "x"]) == 2
    assert "CHECKPOINT_PATH" in capsys.readouterr().err
    assert infer.main(["--checkpoint", str(hf_dir), "--task", "demo_arithmetic_zs_nopt",
                       "--max_examples", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown task or mixture 'demo_arithmetic_zs_nopt'" in err
    assert "demo_arithmetic_zs_noopt" in err  # suggestion
    assert infer.main(["--checkpoint", str(hf_dir), "--vocab", "byte", "--prompt", "x",
                       "--temperature", "1", "--top_p", "0"]) == 2
    assert "--top_p" in capsys.readouterr().err


def test_vocab_size_mismatch_names_both_sizes(tmp_path, capsys):
    import jax

    from flan_jax.models import t5

    config = t5.get_config("tiny", vocab_size=128)  # < ByteVocabulary's 259 ids
    checkpoints.save_params(tmp_path / "ckpt", t5.init_params(config, jax.random.key(0)), config)
    assert infer.main(["--checkpoint", str(tmp_path / "ckpt"), "--vocab", "byte",
                       "--prompt", "x"]) == 2
    err = capsys.readouterr().err
    assert "has 259 token ids but the model's vocab_size is 128" in err


def test_cli_subprocess_reads_stdin(hf_dir):
    env = {**os.environ, "FLAN_JAX_VOCAB": "byte", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-m", "flan_jax.infer", "--checkpoint", str(hf_dir),
         "--max_decode_length", "5"], input="first prompt\nsecond prompt\n", text=True,
        capture_output=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2
