"""Parameter tree, counts, logical axes, configs and gin files of the flan_jax T5 model.

Counts use `jax.eval_shape`, so even XXL is checked without allocating its weights.
"""

from __future__ import annotations

import functools

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from flan_jax.kernels.xla_cpu import low_precision_matmul
from flan_jax.models import t5
from flan_jax.models.layers import relative_position_bucket

from conftest import REPO

GIN_DIR = REPO / "gin" / "models"
PARAM_COUNTS = {
    "small": 76_961_152,
    "base": 247_577_856,
    "large": 783_150_080,
    "xl": 2_849_757_184,
    "xxl": 11_135_332_352,
}
AXIS_NAMES = {"embed", "mlp", "joined_kv", "heads", "vocab", "relpos_buckets"}


def _flat(tree: dict) -> dict[str, object]:
    return traverse_util.flatten_dict(tree, sep="/")


def _t5x_shapes(config: t5.T5Config) -> dict[str, tuple[int, ...]]:
    """The t5x parameter tree (paths and shapes), written out from its specification."""
    d, joined, ff = config.d_model, config.num_heads * config.d_kv, config.d_ff
    attention = {"query": (d, joined), "key": (d, joined), "value": (d, joined),
                 "out": (joined, d)}
    mlp = {"wi_0": (d, ff), "wi_1": (d, ff), "wo": (ff, d)}
    shapes = {
        "token_embedder/embedding": (config.vocab_size, d),
        "encoder/relpos_bias/rel_embedding": (config.num_heads, 32),
        "encoder/encoder_norm/scale": (d,),
        "decoder/relpos_bias/rel_embedding": (config.num_heads, 32),
        "decoder/decoder_norm/scale": (d,),
        "decoder/logits_dense/kernel": (d, config.vocab_size),
    }
    for i in range(config.num_layers):
        layer = f"encoder/layers_{i}"
        shapes[f"{layer}/pre_attention_layer_norm/scale"] = (d,)
        shapes[f"{layer}/pre_mlp_layer_norm/scale"] = (d,)
        shapes.update({f"{layer}/attention/{k}/kernel": s for k, s in attention.items()})
        shapes.update({f"{layer}/mlp/{k}/kernel": s for k, s in mlp.items()})
    for i in range(config.num_decoder_layers):
        layer = f"decoder/layers_{i}"
        for norm in ("pre_self_attention_layer_norm", "pre_cross_attention_layer_norm",
                     "pre_mlp_layer_norm"):
            shapes[f"{layer}/{norm}/scale"] = (d,)
        for block in ("self_attention", "encoder_decoder_attention"):
            shapes.update({f"{layer}/{block}/{k}/kernel": s for k, s in attention.items()})
        shapes.update({f"{layer}/mlp/{k}/kernel": s for k, s in mlp.items()})
    return shapes


@pytest.mark.parametrize("size", sorted(PARAM_COUNTS))
def test_parameter_count_and_t5x_tree(size: str) -> None:
    config = t5.get_config(size)
    flat = _flat(t5.abstract_params(config))
    assert sum(int(np.prod(x.shape)) for x in flat.values()) == PARAM_COUNTS[size]
    assert {path: tuple(x.shape) for path, x in flat.items()} == _t5x_shapes(config)
    assert all(x.dtype == jnp.float32 for x in flat.values())


def test_tree_with_uneven_stacks_and_narrow_heads() -> None:
    config = t5.get_config("tiny", num_decoder_layers=3, d_kv=5, num_heads=3)
    params = t5.abstract_params(config)
    assert {p: x.shape for p, x in _flat(params).items()} == _t5x_shapes(config)


def test_init_is_boxed_with_logical_axes() -> None:
    config = t5.get_config("tiny")
    tokens = jnp.ones((1, 3), jnp.int32)
    boxed = _flat(jax.eval_shape(t5.Transformer(config).init, jax.random.key(0), tokens,
                                 tokens)["params"])
    assert set(boxed) == set(_t5x_shapes(config))
    assert all(isinstance(x, nn.LogicallyPartitioned) for x in boxed.values())
    axes = {path: tuple(spec) for path, spec in _flat(t5.param_axes(config)).items()}
    assert axes["token_embedder/embedding"] == ("vocab", "embed")
    assert axes["encoder/layers_0/attention/query/kernel"] == ("embed", "joined_kv")
    assert axes["decoder/layers_1/self_attention/out/kernel"] == ("joined_kv", "embed")
    assert axes["decoder/layers_0/mlp/wi_1/kernel"] == ("embed", "mlp")
    assert axes["decoder/layers_0/mlp/wo/kernel"] == ("mlp", "embed")
    assert axes["decoder/logits_dense/kernel"] == ("embed", "vocab")
    assert axes["encoder/relpos_bias/rel_embedding"] == ("heads", "relpos_buckets")
    assert axes["decoder/decoder_norm/scale"] == ("embed",)
    assert all(set(spec) <= AXIS_NAMES for spec in axes.values())


def test_query_init_folds_in_attention_scaling() -> None:
    config = t5.get_config("tiny", d_model=256, d_kv=64, num_heads=4)
    params = _flat(jax.jit(t5.init_params, static_argnums=0)(config, jax.random.key(0)))
    query = float(np.std(params["encoder/layers_0/attention/query/kernel"]))
    key = float(np.std(params["encoder/layers_0/attention/key/kernel"]))
    assert query * np.sqrt(config.d_kv) == pytest.approx(key, rel=0.05)
    assert float(np.std(params["token_embedder/embedding"])) == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize("size", t5.SIZES)
def test_gin_file_gives_the_preset(size: str) -> None:
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings([str(GIN_DIR / f"flan_t5_{size}.gin")],
                                            ["DROPOUT_RATE = 0.05"])
        configured = gin.query_parameter("%MODEL_CONFIG").scoped_configurable_fn()
    finally:
        gin.clear_config()
    assert configured == t5.get_config(size, dropout_rate=0.05)


def test_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown T5 size 'huge'"):
        t5.get_config("huge")
    with pytest.raises(ValueError, match="remat_policy"):
        t5.get_config("tiny", remat_policy="everything")
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        t5.get_config("tiny", d_model=0)
    with pytest.raises(ValueError, match="dtype"):
        t5.get_config("tiny", dtype="float64")


def test_hf_config_round_trip() -> None:
    config = t5.get_config("base", num_decoder_layers=4, dropout_rate=0.1)
    hf = config.to_hf_dict()
    assert hf["feed_forward_proj"] == "gated-gelu" and hf["tie_word_embeddings"] is False
    assert t5.T5Config.from_hf_dict(hf) == config
    assert t5.T5Config.from_hf_dict(hf, dtype="bfloat16").dtype == "bfloat16"
    with pytest.raises(ValueError, match="gated-gelu"):
        t5.T5Config.from_hf_dict({**hf, "feed_forward_proj": "relu"})
    with pytest.raises(ValueError, match="tie_word_embeddings"):
        t5.T5Config.from_hf_dict({**hf, "tie_word_embeddings": True})


def test_relative_position_buckets_match_t5() -> None:
    torch_t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    torch = pytest.importorskip("torch")
    relative = np.arange(-600, 601)
    for bidirectional in (True, False):
        ours = relative_position_bucket(jnp.asarray(relative), bidirectional=bidirectional,
                                           num_buckets=32, max_distance=128)
        theirs = torch_t5.T5Attention._relative_position_bucket(
            torch.from_numpy(relative), bidirectional=bidirectional)
        np.testing.assert_array_equal(np.asarray(ours), theirs.numpy())


@pytest.fixture(scope="module")
def tiny_batch() -> tuple[t5.T5Config, dict, jnp.ndarray, jnp.ndarray]:
    config = t5.get_config("tiny", dropout_rate=0.1, num_layers=1, num_decoder_layers=1)
    params = jax.jit(t5.init_params, static_argnums=0)(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    inputs = jnp.asarray(rng.integers(2, config.vocab_size, (2, 7)), jnp.int32)
    targets = jnp.asarray(rng.integers(2, config.vocab_size, (2, 5)), jnp.int32)
    return config, params, inputs, targets


@functools.partial(jax.jit, static_argnums=(0, 4))
def _logits(config: t5.T5Config, params: dict, inputs: jnp.ndarray, targets: jnp.ndarray,
            enable_dropout: bool = False) -> jnp.ndarray:
    return t5.Transformer(config).apply({"params": params}, inputs, targets, targets,
                                        enable_dropout=enable_dropout,
                                        rngs={"dropout": jax.random.key(1)})


@functools.partial(jax.jit, static_argnums=0)
def _loss_and_grad(config: t5.T5Config, params: dict, inputs: jnp.ndarray,
                   targets: jnp.ndarray) -> tuple[jnp.ndarray, dict]:
    def loss(p: dict) -> jnp.ndarray:
        return jnp.mean(jax.nn.logsumexp(_logits(config, p, inputs, targets, True), -1))

    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize("policy", ["full", "minimal"])
def test_remat_keeps_values_and_gradients(tiny_batch: tuple, policy: str) -> None:
    config, params, inputs, targets = tiny_batch
    value, grads = _loss_and_grad(config, params, inputs, targets)
    remat_value, remat_grads = _loss_and_grad(config.replace(remat_policy=policy), params,
                                              inputs, targets)
    assert float(remat_value) == pytest.approx(float(value), rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 grads, remat_grads)


def test_dropout_and_dtypes(tiny_batch: tuple) -> None:
    config, params, inputs, targets = tiny_batch
    plain = _logits(config, params, inputs, targets)
    dropped = _logits(config, params, inputs, targets, True)
    assert not np.allclose(plain, dropped)
    np.testing.assert_array_equal(dropped, _logits(config, params, inputs, targets, True))
    bf16 = _logits(config.replace(dtype="bfloat16"), params, inputs, targets)
    assert bf16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(bf16, np.float32), plain, atol=0.25)


def test_low_precision_matmul_matches_float32_autodiff() -> None:
    """bf16 product and gradients against float32 autodiff of the same bf16-rounded operands."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(24, 16)), jnp.bfloat16)
    kernel = jnp.asarray(rng.normal(size=(16, 40)), jnp.float32)
    g = jnp.asarray(rng.normal(size=(24, 40)), jnp.bfloat16)

    def reference(x32: jnp.ndarray, k32: jnp.ndarray) -> jnp.ndarray:
        k_rounded = k32 + jax.lax.stop_gradient(k32.astype(jnp.bfloat16).astype(jnp.float32) - k32)
        return jnp.dot(x32, k_rounded, precision=jax.lax.Precision.HIGHEST)

    y, vjp = jax.vjp(jax.jit(low_precision_matmul), x, kernel)
    dx, dkernel = vjp(g)
    y_ref, vjp_ref = jax.vjp(reference, x.astype(jnp.float32), kernel)
    dx_ref, dkernel_ref = vjp_ref(g.astype(jnp.float32))
    assert (y.dtype, dx.dtype, dkernel.dtype) == (jnp.bfloat16, jnp.bfloat16, jnp.float32)
    # bf16 outputs: one rounding of the float32 sum; the kernel gradient is not rounded.
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx_ref, rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(dkernel, dkernel_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("policy", ["none", "minimal"])
def test_bfloat16_gradients_follow_float32(tiny_batch: tuple, policy: str) -> None:
    """Mixed precision (bf16 activations, f32 params) keeps the f32 model's gradients."""
    config, params, inputs, targets = tiny_batch
    config = config.replace(dropout_rate=0.0)
    value, grads = _loss_and_grad(config, params, inputs, targets)
    bf16_value, bf16_grads = _loss_and_grad(
        config.replace(dtype="bfloat16", remat_policy=policy), params, inputs, targets)
    assert float(bf16_value) == pytest.approx(float(value), rel=2e-2)
    bf16_flat = _flat(bf16_grads)
    for path, grad in _flat(grads).items():
        bf16_grad = bf16_flat[path]
        assert bf16_grad.dtype == jnp.float32, path
        error = np.linalg.norm(bf16_grad - grad) / np.linalg.norm(grad)
        assert error < 0.05, (path, error)


def test_model_rejects_bad_input(tiny_batch: tuple) -> None:
    config, params, inputs, targets = tiny_batch

    def trace(*args: jnp.ndarray, **kwargs: jnp.ndarray) -> None:
        jax.eval_shape(lambda: t5.Transformer(config).apply({"params": params}, *args, **kwargs))

    with pytest.raises(ValueError, match="encoder_input_tokens must be an integer array"):
        trace(inputs.astype(jnp.float32), targets)
    with pytest.raises(ValueError, match="decoder_segment_ids"):
        trace(inputs, targets, encoder_segment_ids=jnp.ones_like(inputs))
    with pytest.raises(ValueError, match="encoder_positions has shape"):
        trace(inputs, targets, encoder_positions=targets)
