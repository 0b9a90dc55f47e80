"""`python -m flan_jax.convert`: end to end in a subprocess, and its errors in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import seqio
from safetensors.numpy import load_file

from flan_jax.convert import main
from flan_jax.interop.checkpoints import load_params, save_hf, save_params
from flan_jax.interop.common import flatten, unflatten
from flan_jax.models import decoding
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import Transformer, abstract_params

CONFIG = T5Config(
    vocab_size=40, d_model=16, d_ff=24, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=6
)
ROOT = Path(__file__).resolve().parents[1]


def _random_params(config: T5Config, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(0)
    shapes = flatten(abstract_params(config))
    return unflatten({k: (scale * rng.normal(size=v.shape)).astype(np.float32)
                      for k, v in shapes.items()})


@pytest.fixture
def hf_dir(tmp_path) -> Path:
    return save_hf(tmp_path / "hf", _random_params(CONFIG), CONFIG)


def _convert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flan_jax.convert", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_hf_to_t5x_to_hf_subprocess(hf_dir, tmp_path):
    to_t5x = _convert("--to", "t5x", str(hf_dir), str(tmp_path / "t5x"))
    assert to_t5x.returncode == 0, to_t5x.stderr
    assert "(hf) ->" in to_t5x.stdout and "fallback_to_scratch" in to_t5x.stdout
    assert (tmp_path / "t5x" / "checkpoint_0" / "checkpoint").is_file()
    back = _convert("--from", "t5x", "--to", "hf", "--vocab", "none", str(tmp_path / "t5x"),
                    str(tmp_path / "hf2"))
    assert back.returncode == 0, back.stderr
    assert "tokenizer: none written (--vocab none)" in back.stdout
    original, converted = (
        load_file(hf_dir / "model.safetensors"),
        load_file(tmp_path / "hf2" / "model.safetensors"),
    )
    assert original.keys() == converted.keys()
    for name in original:
        np.testing.assert_array_equal(original[name], converted[name], err_msg=name)
    assert json.loads((hf_dir / "config.json").read_text()) == json.loads(
        (tmp_path / "hf2" / "config.json").read_text()
    )


def test_current_t5x_checkpoint_to_hf_gives_t5x_logits_in_transformers(tmp_path, capsys):
    """The orbax checkpoint the real t5x wrote -> Hugging Face -> transformers' own T5."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    source = ROOT / "tests" / "fixtures" / "t5x_orbax_tiny"  # trained on the byte vocabulary
    assert main(["--to", "hf", "--vocab", "byte", str(source), str(tmp_path / "hf")]) == 0
    assert "(t5x) ->" in capsys.readouterr().out
    model = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf").eval()
    reference = np.load(source / "reference_logits.npz")
    encoder = torch.tensor(reference["encoder_input_tokens"])
    with torch.no_grad():
        logits = model(input_ids=encoder, attention_mask=encoder > 0,
                       decoder_input_ids=torch.tensor(reference["decoder_input_tokens"])).logits
    np.testing.assert_allclose(logits.numpy(), reference["logits"], atol=1e-5, rtol=0)
    # ... and back to t5x's current layout, asked for by name.
    assert main(["--to", "t5x", "--t5x_layout", "orbax", str(tmp_path / "hf"),
                 str(tmp_path / "t5x")]) == 0
    assert "(t5x, orbax)" in capsys.readouterr().out
    assert (tmp_path / "t5x" / "checkpoint_0" / "state" / "_METADATA").is_file()
    assert not (tmp_path / "t5x" / "checkpoint_0" / "checkpoint").exists()


def test_dtype_cast_to_flan_jax(hf_dir, tmp_path, capsys):
    assert main(["--to", "flan_jax", "--dtype", "bfloat16", str(hf_dir), str(tmp_path / "fj")]) == 0
    assert "bfloat16" in capsys.readouterr().out
    params, config = load_params(tmp_path / "fj")
    assert config == CONFIG.replace(dropout_rate=config.dropout_rate)
    assert {a.dtype for a in flatten(params).values()} == {np.dtype(ml_dtypes.bfloat16)}


def test_errors_are_one_message_without_traceback(hf_dir, tmp_path, capsys):
    assert main(["--to", "hf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'missing'}: does not exist\nPass a Hugging Face "
                          "directory (config.json + model.safetensors")
    assert main(["--to", "hf", str(hf_dir), str(hf_dir)]) == 1
    assert (f"error: {hf_dir}: is not empty (it holds config.json, model.safetensors); a Hugging "
            "Face export writes a whole model directory") in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert main(["--to", "hf", "--vocab", "byte", str(hf_dir), str(tmp_path / "notes")]) == 1
    assert "is not empty (it holds todo.txt)" in capsys.readouterr().err
    assert main(["--from", "t5x", "--to", "hf", "--vocab", "none", str(hf_dir),
                 str(tmp_path / "out")]) == 1
    assert "no t5x checkpoint here" in capsys.readouterr().err
    # The vocabulary: unknown, for another format, missing, or too large for the model.
    assert main(["--to", "hf", str(hf_dir), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"error: cannot tell which vocabulary {hf_dir} was trained with (it has no "
        "vocabulary.json of a flan_jax.train run, spiece.model or ByT5 tokenizer config), so "
        "the tokenizer files cannot be written. Name it: --vocab byte, --vocab "
        "PATH/spiece.model (a demo run: --vocab $(python -m flan_jax.data.demo.vocab)), or "
        "--vocab none for the weights alone.\n")
    assert main(["--to", "t5x", "--vocab", "byte", str(hf_dir), str(tmp_path / "out")]) == 1
    assert "it is used only with --to hf" in capsys.readouterr().err
    assert main(["--to", "hf", "--vocab", "nowhere.model", str(hf_dir), str(tmp_path / "out")]) == 1
    assert "error: --vocab nowhere.model: no such file" in capsys.readouterr().err
    assert main(["--to", "hf", "--vocab", "byte", str(hf_dir), str(tmp_path / "out")]) == 1
    assert ("error: the vocabulary (--vocab byte) has 259 token ids but the model's vocab_size "
            "is 40") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("vocabulary, vocab_size, umask", [
    ("byte", 384, 0o027),  # the tiny presets: 259 ids, padded
    ("demo", 640, 0o022),  # the demo's 512 pieces + 100 extra ids, padded
])
def test_hf_export_loads_with_auto_classes_and_computes_what_flan_jax_does(
        vocabulary, vocab_size, umask, demo_spm, tmp_path, capsys):
    """A flan_jax checkpoint -> `--to hf` -> AutoTokenizer + AutoModelForSeq2SeqLM: the
    prompt's ids are seqio's, the logits and the greedy answer are flan_jax's."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = CONFIG.replace(vocab_size=vocab_size)
    params = _random_params(config, scale=0.5)
    save_params(tmp_path / "src", params, config)
    spec = str(demo_spm) if vocabulary == "demo" else "byte"
    seqio_vocab = (seqio.SentencePieceVocabulary(spec, extra_ids=100) if vocabulary == "demo"
                   else seqio.ByteVocabulary())
    previous = os.umask(umask)
    try:
        assert main(["--to", "hf", "--vocab", spec, str(tmp_path / "src"),
                     str(tmp_path / "hf")]) == 0
    finally:
        os.umask(previous)
    out = capsys.readouterr().out
    assert f"vocabulary from --vocab {spec}" in out and "AutoTokenizer.from_pretrained" in out
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "hf").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes

    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    prompt = "Is 7 larger than 12?\nOPTIONS:\n- yes\n- no\n\nAnswer:  no"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == [*seqio_vocab.encode(prompt), 1]
    decoder = np.array([[0, *seqio_vocab.encode("yes no")]])
    ours = Transformer(config).apply({"params": params}, ids.numpy(), decoder)
    with torch.no_grad():
        theirs = model(input_ids=ids, decoder_input_ids=torch.tensor(decoder)).logits.numpy()
    np.testing.assert_allclose(theirs, np.asarray(ours), atol=1e-4, rtol=1e-4)
    answer = decoding.greedy_decode(params, ids.numpy().astype(np.int32), config=config,
                                    max_decode_length=8)
    expected = np.asarray(answer.tokens)[0].tolist()
    generated = model.generate(ids, max_new_tokens=8, do_sample=False, num_beams=1)
    hf_tokens = generated[0, 1:].tolist()
    assert hf_tokens == expected[:len(hf_tokens)]  # transformers stops at EOS, flan_jax pads
    assert tokenizer.decode(generated[0], skip_special_tokens=True) == seqio_vocab.decode(
        [t for t in expected if t not in (0, 1)])


def test_help_explains_layouts(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in (
        "--from",
        "--to",
        "--dtype",
        "SRC",
        "DST",
        "hf",
        "t5x",
        "flan_jax",
        "weights_only",
        "orbax",
        "--t5x_layout",
        "--vocab",
        "AutoTokenizer",
    ):
        assert word in text
