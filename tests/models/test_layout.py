"""Scanned layers (`T5Config.scan_layers`): the same function as the per-layer model, and
checkpoints that move between the two layouts (`flan_jax.models.layout`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers

from flan_jax.interop import checkpoints
from flan_jax.models import layout, t5
from flan_jax.training.checkpoints import TrainCheckpoints
from flan_jax.training.optimizers import make_optimizer
from flan_jax.training.step import TrainState, init_train_state

CONFIG = t5.get_config("tiny", num_layers=3, num_decoder_layers=2)
SCANNED = CONFIG.replace(scan_layers=True)


@pytest.fixture(scope="module")
def params() -> dict:
    return jax.tree.map(np.asarray, t5.init_params(CONFIG, jax.random.key(0)))


def _packed_batch() -> dict[str, jax.Array]:
    """Two rows, the first packing two examples, the second padded."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(2, CONFIG.vocab_size, (2, 12)).astype(np.int32)
    targets = rng.integers(2, CONFIG.vocab_size, (2, 8)).astype(np.int32)
    inputs[1, 9:], targets[1, 6:] = 0, 0
    enc_seg = np.array([[1] * 5 + [2] * 7, [1] * 9 + [0] * 3], np.int32)
    dec_seg = np.array([[1] * 3 + [2] * 5, [1] * 6 + [0] * 2], np.int32)
    return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
            "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
            "encoder_segment_ids": enc_seg, "decoder_segment_ids": dec_seg}


def _loss_grad(config: t5.T5Config, params: dict) -> tuple[jax.Array, jax.Array, dict]:
    batch = _packed_batch()

    def loss(p: dict) -> tuple[jax.Array, jax.Array]:
        logits = t5.Transformer(config).apply({"params": p}, **batch)
        return jnp.sum(jnp.sin(logits) * (batch["decoder_target_tokens"] > 0)[..., None]), logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return value, logits, grads


def test_scanned_model_computes_the_per_layer_function(params: dict) -> None:
    scanned = layout.to_scanned(params)
    assert set(scanned["encoder"]) == {"layers", "relpos_bias", "encoder_norm"}
    assert scanned["encoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape == (3, 32, 64)
    assert scanned["decoder"]["layers"]["mlp"]["wi_0"]["kernel"].shape == (2, 32, 64)
    assert jax.tree.structure(scanned) == jax.tree.structure(t5.abstract_params(SCANNED))
    assert tuple(t5.param_axes(SCANNED)["encoder"]["layers"]["attention"]["query"]["kernel"]) == (
        "layers", "embed", "joined_kv")
    value, logits, grads = _loss_grad(CONFIG, params)
    s_value, s_logits, s_grads = _loss_grad(SCANNED, scanned)
    np.testing.assert_allclose(s_logits, logits, rtol=1e-5, atol=1e-5)
    assert float(s_value) == pytest.approx(float(value), rel=1e-5)
    # Equal up to float32 summation order, relative to each gradient's largest entry.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0,
                                                         atol=1e-5 * np.abs(b).max()),
                 layout.to_per_layer(s_grads), grads)


def test_layout_round_trip_covers_optimizer_state(params: dict) -> None:
    optimizer = make_optimizer(learning_rate=1e-2)
    state = optimizer.init(params)
    scanned_state = optimizer.init(layout.to_scanned(params))
    assert layout.is_scanned(scanned_state) and not layout.is_scanned(state)
    assert jax.tree.structure(layout.to_scanned(state)) == jax.tree.structure(scanned_state)
    jax.tree.map(np.testing.assert_array_equal, layout.to_per_layer(scanned_state), state)
    jax.tree.map(np.testing.assert_array_equal,
                 layout.to_per_layer(layout.to_scanned(params)), params)
    with pytest.raises(ValueError, match="layers_0 .. layers_1"):
        layout.to_scanned({"layers_0": 1, "layers_2": 2})


def test_checkpoints_store_per_layer_and_load_into_either(params: dict, tmp_path) -> None:
    """A scanned model's weights export as a per-layer Hugging Face directory that
    transformers reads, and every format loads back into the scanned or the per-layer
    model."""
    scanned = layout.to_scanned(params)
    for fmt in checkpoints.FORMATS:
        checkpoints.save_any(tmp_path / fmt, scanned, SCANNED, fmt)
        back, config = checkpoints.load_any(tmp_path / fmt, config=SCANNED)
        assert config.scan_layers
        jax.tree.map(np.testing.assert_array_equal, back, scanned)
        per_layer, _ = checkpoints.load_any(tmp_path / fmt, config=CONFIG)
        jax.tree.map(np.testing.assert_array_equal, per_layer, params)
    hf = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "hf")
    wo = hf.state_dict()["encoder.block.2.layer.1.DenseReluDense.wo.weight"].numpy()
    np.testing.assert_array_equal(wo, params["encoder"]["layers_2"]["mlp"]["wo"]["kernel"].T)


def test_training_checkpoint_resumes_in_the_other_layout(params: dict, tmp_path) -> None:
    """A run saved per layer (CPU) resumes scanned (GPU, TPU), optimizer state included."""
    optimizer = make_optimizer(learning_rate=1e-2)
    state = init_train_state(CONFIG, optimizer, jax.random.key(0), params)
    state = state._replace(opt_state=jax.tree.map(lambda x: x + jnp.ones_like(x),
                                                  state.opt_state))
    saver = TrainCheckpoints(tmp_path, CONFIG, period=1, async_save=False)
    saver.save(state._replace(step=jnp.asarray(3, jnp.int32)), {"batches_consumed": 3})
    saver.close()
    abstract = jax.eval_shape(lambda: init_train_state(SCANNED, optimizer, jax.random.key(0)))
    host = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=host),
                            abstract)
    restored, data, _ = TrainCheckpoints(tmp_path, SCANNED, period=1).restore_or_none(abstract)
    assert int(restored.step) == 3 and data == {"batches_consumed": 3}
    expected = TrainState(restored.step, layout.to_scanned(state.params),
                          layout.to_scanned(state.opt_state))
    assert jax.tree.structure(restored) == jax.tree.structure(expected)
    jax.tree.map(np.testing.assert_array_equal, restored, expected)
