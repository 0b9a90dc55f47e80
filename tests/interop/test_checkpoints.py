"""Checkpoint interop: Hugging Face and t5x layouts, the flan_jax orbax layout, and errors.

Tiny models only. The Hugging Face side is a randomly initialised PyTorch
T5ForConditionalGeneration with an untied lm_head (like Flan-T5), num_heads * d_kv !=
d_model and more decoder than encoder layers; every tensor, layer norms included, is
random so that a swapped mapping cannot go unnoticed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import tensorstore as ts
import torch
from flax import serialization
from safetensors.numpy import load_file, save_file
from transformers import T5Config as HFConfig
from transformers import T5ForConditionalGeneration

from flan_jax.interop.checkpoints import (
    CheckpointError,
    check_params,
    detect_format,
    load_any,
    load_hf,
    load_params,
    load_t5x,
    save_hf,
    save_params,
    save_t5x,
)
from flan_jax.interop.common import flatten, unflatten
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import Transformer, abstract_params

from conftest import FIXTURES

ENCODER_TOKENS = np.array([[5, 6, 7, 8, 9, 1, 0, 0], [11, 12, 13, 1, 0, 0, 0, 0]])
DECODER_TOKENS = np.array([[0, 4, 5, 6, 7], [0, 8, 9, 10, 0]])
SMALL = T5Config(
    vocab_size=40, d_model=16, d_ff=24, num_layers=1, num_decoder_layers=2, num_heads=2, d_kv=4
)


def _hf_model() -> T5ForConditionalGeneration:
    torch.manual_seed(0)
    config = HFConfig(
        vocab_size=96,
        d_model=32,
        d_ff=48,
        d_kv=8,
        num_heads=3,
        num_layers=2,
        num_decoder_layers=3,
        relative_attention_num_buckets=16,
        relative_attention_max_distance=24,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    # Transformers 5 ties lm_head to the embedding at construction; Flan-T5 does not.
    model.lm_head.weight = torch.nn.Parameter(torch.empty(96, 32))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)
    return model.eval()


def _hf_logits(model: T5ForConditionalGeneration) -> np.ndarray:
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(ENCODER_TOKENS),
            attention_mask=torch.tensor(ENCODER_TOKENS > 0),
            decoder_input_ids=torch.tensor(DECODER_TOKENS),
        ).logits.numpy()


def _our_logits(params: dict, config: T5Config) -> np.ndarray:
    return np.asarray(Transformer(config).apply({"params": params}, ENCODER_TOKENS, DECODER_TOKENS))


def _assert_same_tree(a: dict, b: dict) -> None:
    fa, fb = flatten(a), flatten(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k].dtype == fb[k].dtype, k
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


@pytest.fixture(scope="module")
def hf_model() -> T5ForConditionalGeneration:
    return _hf_model()


@pytest.fixture(scope="module")
def hf_dir(hf_model, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hf")
    hf_model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def loaded(hf_dir) -> tuple[dict, T5Config]:
    return load_hf(hf_dir)


def _copy_config(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "config.json", dst / "config.json")
    return dst


# Hugging Face


def test_hf_config_and_logits_match_transformers(hf_model, loaded):
    params, config = loaded
    expected = dict(num_layers=2, num_decoder_layers=3, num_heads=3, d_kv=8)
    expected.update(relative_attention_num_buckets=16, relative_attention_max_distance=24)
    assert {k: getattr(config, k) for k in expected} == expected
    np.testing.assert_allclose(_our_logits(params, config), _hf_logits(hf_model), atol=1e-4, rtol=0)


def test_hf_round_trip_is_exact(hf_model, hf_dir, loaded, tmp_path):
    params, config = loaded
    save_hf(tmp_path / "out", params, config)
    original, written = (
        load_file(hf_dir / "model.safetensors"),
        load_file(tmp_path / "out" / "model.safetensors"),
    )
    assert original.keys() == written.keys()
    for name in original:
        np.testing.assert_array_equal(original[name], written[name], err_msg=name)
    reloaded, info = T5ForConditionalGeneration.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    np.testing.assert_array_equal(_hf_logits(reloaded.eval()), _hf_logits(hf_model))


def test_pytorch_bin_is_read_with_embedding_copies_and_unused_bias(
    hf_model, hf_dir, loaded, tmp_path
):
    directory = _copy_config(hf_dir, tmp_path / "bin")
    state = hf_model.state_dict()  # includes encoder/decoder.embed_tokens, equal to shared
    assert "encoder.embed_tokens.weight" in state
    # Old T5 checkpoints also carry an unused cross-attention bias, which is ignored.
    state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.ones(
        16, 3
    )
    torch.save({k: v.to(torch.bfloat16) for k, v in state.items()}, directory / "pytorch_model.bin")
    params, _ = load_hf(directory)
    expected = {k: v.astype(ml_dtypes.bfloat16) for k, v in flatten(loaded[0]).items()}
    _assert_same_tree(params, unflatten(expected))


def test_pytorch_bin_with_pickled_objects_is_refused(hf_dir, tmp_path):
    directory = _copy_config(hf_dir, tmp_path / "bin")
    torch.save(
        {"shared.weight": torch.zeros(2), "payload": Path("x")}, directory / "pytorch_model.bin"
    )
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*weights_only=True"):
        load_hf(directory)


def test_sharded_safetensors(hf_model, loaded, tmp_path):
    hf_model.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    _assert_same_tree(load_hf(tmp_path / "sharded")[0], loaded[0])
    shard = sorted((tmp_path / "sharded").glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"shard {shard.name} listed in the index is missing"):
        load_hf(tmp_path / "sharded")


def test_hf_every_problem_listed_in_one_error(hf_dir, tmp_path):
    directory = _copy_config(hf_dir, tmp_path / "bad")
    tensors = load_file(hf_dir / "model.safetensors")
    del tensors["decoder.block.1.layer.2.DenseReluDense.wo.weight"]
    tensors["encoder.block.0.layer.1.DenseReluDense.wi_1.weight"] = np.zeros((48, 31), np.float32)
    tensors["encoder.block.7.layer.0.SelfAttention.q.weight"] = np.zeros((24, 32), np.float32)
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as error:
        load_hf(directory)
    message = str(error.value)
    assert "3 problems" in message
    assert (
        "missing parameter decoder/layers_1/mlp/wo/kernel (decoder.block.1.layer.2.DenseReluDense.wo.weight): "
        "the model expects shape (48, 32)"
    ) in message
    assert (
        "wrong shape for encoder/layers_0/mlp/wi_1/kernel (encoder.block.0.layer.1.DenseReluDense"
        ".wi_1.weight): checkpoint has (31, 48), the model expects (32, 48)"
    ) in message
    assert (
        "unexpected tensor encoder.block.7.layer.0.SelfAttention.q.weight with shape (24, 32)"
        in message
    )


def test_hf_embedding_copy_must_equal_shared(hf_dir, tmp_path):
    directory = _copy_config(hf_dir, tmp_path / "copy")
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"] + 1
    save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match="decoder.embed_tokens.weight differs from shared.weight"
    ):
        load_hf(directory)


def test_missing_config_json_is_named(hf_dir, tmp_path):
    directory = tmp_path / "noconfig"
    directory.mkdir()
    shutil.copy(hf_dir / "model.safetensors", directory)
    with pytest.raises(CheckpointError, match=r"noconfig/config\.json: missing model config"):
        load_any(directory)


def test_corrupt_safetensors_is_named(hf_dir, tmp_path):
    directory = _copy_config(hf_dir, tmp_path / "corrupt")
    (directory / "model.safetensors").write_bytes(b"\x07not a safetensors file")
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: not a readable safetensors file"
    ):
        load_hf(directory)


def test_t5_v1_0_config_is_refused(hf_dir, tmp_path):
    directory = _copy_config(hf_dir, tmp_path / "v10")
    shutil.copy(hf_dir / "model.safetensors", directory)
    config = json.loads((directory / "config.json").read_text())
    config.update(feed_forward_proj="relu", tie_word_embeddings=True)
    del config["scale_decoder_outputs"]
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="config.json: not a usable T5 config.*gated-gelu"):
        load_hf(directory)


def test_config_disagreement_is_listed(hf_dir, loaded):
    wrong = loaded[1].replace(num_heads=4, d_kv=6, dropout_rate=0.0)
    with pytest.raises(CheckpointError) as error:
        load_any(hf_dir, config=wrong)
    assert "config disagreement on num_heads: expected 4, checkpoint has 3" in str(error.value)
    assert "config disagreement on d_kv: expected 6, checkpoint has 8" in str(error.value)
    config = loaded[1].replace(dropout_rate=0.05)  # not an architecture field
    assert load_any(hf_dir, config=config)[1] is config


# t5x


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_t5x_round_trip(loaded, tmp_path, dtype):
    params, config = loaded
    params = {k: v.astype(dtype) for k, v in flatten(params).items()}
    written = save_t5x(tmp_path / "model", unflatten(params), config)
    assert written == tmp_path / "model" / "checkpoint_0"
    contents = serialization.msgpack_restore((written / "checkpoint").read_bytes())
    assert contents["version"] == 3 and int(contents["optimizer"]["state"]["step"]) == 0
    spec = contents["optimizer"]["target"]["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert (
        spec["driver"] == "zarr"
        and spec["dtype"] == dtype
        and spec["metadata"]["shape"] == [32, 24]
    )
    assert spec["kvstore"]["path"].rstrip("/") == "target.encoder.layers_0.attention.query.kernel"
    zarray = json.loads(
        (written / "target.encoder.layers_0.attention.query.kernel" / ".zarray").read_text()
    )
    assert zarray["compressor"]["id"] == "gzip" and zarray["dtype"] in ("<f4", "bfloat16")
    for path in (tmp_path / "model", written, written / "checkpoint"):
        restored, restored_config = load_t5x(path)
        _assert_same_tree(restored, unflatten(params))
        assert restored_config == config


def test_t5x_model_dir_takes_latest_step(tmp_path):
    first, second = _random_params(1), _random_params(2)
    save_t5x(tmp_path, first, SMALL, step=5)
    save_t5x(tmp_path, second, SMALL, step=40)
    (tmp_path / "checkpoint_100.tmp-1").mkdir()  # an unfinished save is ignored
    assert detect_format(tmp_path) == "t5x"
    _assert_same_tree(load_t5x(tmp_path)[0], second)
    with pytest.raises(CheckpointError, match="checkpoint_40: already exists"):
        save_t5x(tmp_path, second, SMALL, step=40)


def _random_params(seed: int) -> dict:
    """Random arrays in the model's parameter tree for SMALL (no slow model init)."""
    rng = np.random.default_rng(seed)
    shapes = flatten(abstract_params(SMALL))
    return unflatten({k: rng.normal(size=v.shape).astype(np.float32) for k, v in shapes.items()})


def _write_zarr(directory: Path, name: str, array: np.ndarray, chunks: list[int]) -> None:
    ts.open(
        {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(directory / name)},
            "metadata": {
                "compressor": {"id": "gzip"},
                "shape": list(array.shape),
                "chunks": chunks,
            },
            "dtype": str(array.dtype) if array.dtype != np.uint16 else "uint16",
        },
        create=True,
    ).result().write(array).result()


def _handmade_t5x(directory: Path, params: dict, version: int = 3) -> None:
    """A t5x checkpoint built straight from the format description (msgpack + zarr),
    not with flan_jax's writer: old and new spec styles, GCS-written specs, an inline
    array, odd chunking, and Adafactor state that must be ignored."""
    directory.mkdir(parents=True)
    target, param_states = {}, {}
    for i, (path, value) in enumerate(sorted(flatten(params).items())):
        name = "target." + path.replace("/", ".")
        array = np.asarray(value).astype(ml_dtypes.bfloat16)
        stored = array.view(np.uint16) if version == 2 else array
        chunks = [max(1, d // 2) for d in array.shape]
        if i % 4 == 3:  # written to the msgpack file itself
            leaf = array
        else:
            _write_zarr(directory, name, stored, chunks)
            metadata = {"compressor": {"id": "gzip"}, "shape": list(array.shape), "chunks": chunks}
            kvstore = [
                {"driver": "file", "path": name},
                {"driver": "gcs", "bucket": "t5x-dummy-bucket", "path": name},
            ]
            leaf = {
                "driver": "zarr",
                "dtype": str(stored.dtype),
                "kvstore": kvstore[i % 2],
                "metadata": metadata,
            }
            if i % 4 == 2:  # the tensorstore<0.1.14 spec style: path beside the kvstore
                leaf = {**leaf, "kvstore": {"driver": "file"}, "path": name}
        target[path] = leaf
        param_states[path] = {
            "v_row": np.zeros((1,), np.float32),
            "v": np.zeros(array.shape[:1], np.float32),
        }
    contents = {
        "version": version,
        "optimizer": {
            "target": unflatten(target),
            "state": {"step": np.asarray(1000, np.int32), "param_states": unflatten(param_states)},
        },
    }
    (directory / "checkpoint").write_bytes(serialization.msgpack_serialize(contents))


@pytest.mark.parametrize("version", [2, 3])
def test_t5x_reader_on_handmade_checkpoint(tmp_path, version):
    params = _random_params(0)
    _handmade_t5x(tmp_path / "checkpoint_1000", params, version)
    restored, config = load_any(tmp_path)
    expected = {k: v.astype(ml_dtypes.bfloat16) for k, v in flatten(params).items()}
    _assert_same_tree(restored, unflatten(expected))
    assert config == SMALL.replace(dropout_rate=config.dropout_rate)  # inferred from the shapes


def test_t5x_corrupt_msgpack_is_named(tmp_path):
    directory = save_t5x(tmp_path, _random_params(0), SMALL)
    data = (directory / "checkpoint").read_bytes()
    (directory / "checkpoint").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"checkpoint_0/checkpoint: not a valid t5x msgpack file"
    ) as error:
        load_any(tmp_path)
    assert "corrupt or truncated" in str(error.value)


def test_t5x_missing_and_damaged_arrays_are_named(tmp_path):
    directory = save_t5x(tmp_path, _random_params(0), SMALL)
    shutil.rmtree(directory / "target.decoder.layers_1.mlp.wo.kernel")
    (directory / "target.encoder.encoder_norm.scale" / "0").write_bytes(b"garbage")
    with pytest.raises(CheckpointError) as error:
        load_t5x(directory)
    message = str(error.value)
    assert "cannot read parameter decoder/layers_1/mlp/wo/kernel: its array directory" in message
    assert "cannot read parameter encoder/encoder_norm/scale" in message
    assert (
        "missing parameter decoder/layers_1/mlp/wo/kernel (target.decoder.layers_1.mlp.wo.kernel)"
        in message
    )


# t5x's current layout: a checkpoint the real t5x wrote (tests/fixtures/t5x_orbax_tiny)

T5X_ORBAX = FIXTURES / "t5x_orbax_tiny"
TINY_T5X = T5Config(vocab_size=384, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2,
                    num_heads=4, d_kv=8)


def test_t5x_orbax_checkpoint_reproduces_t5x_logits():
    for path in (T5X_ORBAX, T5X_ORBAX / "checkpoint_4", T5X_ORBAX / "checkpoint_4" / "state"):
        assert detect_format(path) == "t5x"
    params, config = load_any(T5X_ORBAX)
    assert config == TINY_T5X.replace(dropout_rate=config.dropout_rate)  # from the shapes
    reference = np.load(T5X_ORBAX / "reference_logits.npz")
    logits = Transformer(config).apply(
        {"params": params}, reference["encoder_input_tokens"],
        reference["decoder_input_tokens"], reference["decoder_target_tokens"])
    np.testing.assert_allclose(np.asarray(logits), reference["logits"], atol=1e-5, rtol=0)
    # INITIAL_CHECKPOINT_PATH: the run's config is checked against the checkpoint.
    assert load_any(T5X_ORBAX / "checkpoint_4", config=TINY_T5X)[1] is TINY_T5X
    with pytest.raises(CheckpointError, match="shape"):
        load_any(T5X_ORBAX, config=TINY_T5X.replace(d_ff=48))


def test_t5x_orbax_layout_is_written_as_t5x_writes_it(tmp_path):
    params, config = load_any(T5X_ORBAX)
    written = save_t5x(tmp_path / "model", params, config, step=4, t5x_layout="orbax")
    assert written == tmp_path / "model" / "checkpoint_4"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["checkpoint_4"]

    def tree(directory: Path) -> dict:
        return json.loads((directory / "state" / "_METADATA").read_text())["tree_metadata"]

    ours, theirs = tree(written), tree(T5X_ORBAX / "checkpoint_4")
    assert {k for k in ours if k.startswith("('target'")} == \
        {k for k in theirs if k.startswith("('target'")}
    assert "('state', 'step')" in ours and "('state', 'step')" in theirs

    def handlers(directory: Path) -> dict:
        return json.loads((directory / "_CHECKPOINT_METADATA").read_text())["item_handlers"]

    assert handlers(written)["state"] == handlers(T5X_ORBAX / "checkpoint_4")["state"]
    restored, restored_config = load_t5x(tmp_path / "model")
    _assert_same_tree(restored, params)
    assert restored_config == config
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in flatten(params).items()}
    _assert_same_tree(load_t5x(save_t5x(tmp_path / "bf16", unflatten(bf16), config,
                                        t5x_layout="orbax"))[0], unflatten(bf16))


def test_t5x_orbax_damaged_checkpoint_is_named(tmp_path):
    shutil.copytree(T5X_ORBAX / "checkpoint_4", tmp_path / "checkpoint_4")
    data_dir = tmp_path / "checkpoint_4" / "state" / "ocdbt.process_0" / "d"
    for chunk in data_dir.iterdir():
        chunk.chmod(0o644)
        chunk.write_bytes(chunk.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="checkpoint_4/state: cannot restore the orbax") as e:
        load_any(tmp_path)
    assert "incomplete or damaged" in str(e.value)


def test_tensorflow_checkpoint_is_recognised(tmp_path):
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-100"\n')
    with pytest.raises(CheckpointError, match="TensorFlow"):
        load_any(tmp_path)


# flan_jax (orbax) and format detection


def test_flan_jax_round_trip_and_manager_layout(tmp_path):
    params = _random_params(3)
    save_params(tmp_path / "plain", params, SMALL)
    assert detect_format(tmp_path / "plain") == "flan_jax"
    restored, config = load_params(tmp_path / "plain")
    _assert_same_tree(restored, params)
    assert config == SMALL
    # An orbax CheckpointManager directory: numbered steps, config.json at the top.
    manager = tmp_path / "run"
    save_params(manager / "10", _random_params(4), SMALL)
    save_params(manager / "20", params, SMALL)
    shutil.move(manager / "20" / "config.json", manager / "config.json")
    _assert_same_tree(load_any(manager)[0], params)


def test_flan_jax_checkpoint_saved_on_a_mesh_loads_on_one_device(tmp_path):
    params = flatten(_random_params(5))
    np.savez(tmp_path / "params.npz", **params)
    script = f"""
import sys, jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from flan_jax.interop.checkpoints import save_params
from flan_jax.interop.common import unflatten
from flan_jax.models.config import T5Config
mesh = Mesh(np.array(jax.devices()).reshape(2, 2), ("data", "model"))
shard = lambda x: jax.device_put(x, NamedSharding(mesh, PartitionSpec(*[None] * (x.ndim - 1), "model")))
arrays = np.load(sys.argv[1])
save_params(sys.argv[2], unflatten({{k: shard(arrays[k]) for k in arrays.files}}), T5Config(**{dataclasses.asdict(SMALL)!r}))
"""
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "params.npz"), str(tmp_path / "ckpt")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    _assert_same_tree(load_params(tmp_path / "ckpt")[0], unflatten(params))


def test_load_any_casts(loaded, tmp_path, hf_dir):
    params, _ = load_any(hf_dir, dtype="bfloat16")
    assert {v.dtype for v in flatten(params).values()} == {np.dtype(ml_dtypes.bfloat16)}


def test_unrecognised_and_missing_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_any(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        load_any(tmp_path)


def test_check_params_names_path_and_shapes():
    params = flatten(_random_params(0))
    params["decoder/relpos_bias/rel_embedding"] = np.zeros((32, 2), np.float32)
    params["encoder/layers_0/mlp/wi_0/kernel"] = params["encoder/layers_0/mlp/wi_0/kernel"].astype(
        np.int32
    )
    del params["decoder/decoder_norm/scale"]
    params["decoder/extra/kernel"] = np.zeros((3,), np.float32)
    with pytest.raises(CheckpointError) as error:
        check_params(unflatten(params), SMALL)
    message = str(error.value)
    assert (
        "wrong shape for decoder/relpos_bias/rel_embedding: checkpoint has (32, 2), the model expects (2, 32)"
        in message
    )
    assert "wrong dtype for encoder/layers_0/mlp/wi_0/kernel: int32" in message
    assert "missing parameter decoder/decoder_norm/scale: the model expects shape (16,)" in message
    assert "unexpected parameter decoder/extra/kernel with shape (3,)" in message
    check_params(_random_params(0), SMALL)
