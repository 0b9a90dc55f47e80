"""`python -m flan_jax.convert`: end to end in a subprocess, and its errors in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file

from flan_jax.convert import main
from flan_jax.interop.checkpoints import load_params, save_hf
from flan_jax.interop.common import flatten, unflatten
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import abstract_params

CONFIG = T5Config(
    vocab_size=40, d_model=16, d_ff=24, num_layers=2, num_decoder_layers=1, num_heads=2, d_kv=6
)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hf_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    shapes = flatten(abstract_params(CONFIG))
    params = unflatten({k: rng.normal(size=v.shape).astype(np.float32) for k, v in shapes.items()})
    return save_hf(tmp_path / "hf", params, CONFIG)


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
    back = _convert("--from", "t5x", "--to", "hf", str(tmp_path / "t5x"), str(tmp_path / "hf2"))
    assert back.returncode == 0, back.stderr
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
    source = ROOT / "tests" / "fixtures" / "t5x_orbax_tiny"
    assert main(["--to", "hf", str(source), str(tmp_path / "hf")]) == 0
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
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing'}: does not exist")
    assert main(["--to", "hf", str(hf_dir), str(hf_dir)]) == 1
    assert "already holds weights (model.safetensors)" in capsys.readouterr().err
    assert main(["--from", "t5x", "--to", "hf", str(hf_dir), str(tmp_path / "out")]) == 1
    assert "no t5x checkpoint here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


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
    ):
        assert word in text
