"""flan_jax's T5 against Hugging Face transformers' PyTorch T5 on the same random weights.

A random `T5ForConditionalGeneration` (tiny, with num_heads * d_kv != d_model and more
decoder than encoder layers) is saved and read back through flan_jax.interop.checkpoints; logits,
greedy and beam search, target scores and the training loss must agree. Also: packed
batches, sampling, and the t5x loss-normalisation semantics.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from flan_jax.interop.checkpoints import load_hf
from flan_jax.interop.common import flatten
from flan_jax.interop.hf import name_map
from flan_jax.models import decoding, t5
from flan_jax.models.losses import cross_entropy_loss

CONFIG = t5.T5Config(vocab_size=96, d_model=32, d_ff=48, num_layers=2, num_decoder_layers=3,
                     num_heads=4, d_kv=12, relative_attention_num_buckets=8,
                     relative_attention_max_distance=20)
MAX_DECODE = 14
EOS = decoding.EOS_ID


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[transformers.T5ForConditionalGeneration, dict]:
    """(HF model, flan_jax params) holding the same random weights.

    A slightly larger init than HF's default with small token embeddings makes the toy
    model's outputs depend on its inputs (yet stay well conditioned in float32), and a
    boosted EOS logit makes sequences end at different steps.
    """
    torch.manual_seed(0)
    hf_config = transformers.T5Config(**{**CONFIG.to_hf_dict(), "initializer_factor": 1.5})
    hf = transformers.T5ForConditionalGeneration(hf_config).eval()
    with torch.no_grad():
        hf.shared.weight.normal_(0.0, 0.2)
        hf.lm_head.weight[EOS] *= 2.0
    directory = tmp_path_factory.mktemp("hf")
    hf.save_pretrained(directory)
    params, config = load_hf(directory)
    assert config == CONFIG
    return hf, params


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    """Six padded encoder inputs of different lengths, each ending with EOS."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, CONFIG.vocab_size, (6, 24))
    for row, length in enumerate([24, 5, 17, 9, 12, 20]):
        tokens[row, length - 1] = EOS
        tokens[row, length:] = 0
    return tokens


def _hf_generate(hf: transformers.T5ForConditionalGeneration, tokens: np.ndarray,
                 **kwargs: object) -> transformers.utils.ModelOutput:
    # An explicit cache: transformers sizes its default cache by the encoder's layer count,
    # which breaks models with more decoder than encoder layers.
    ids = torch.from_numpy(tokens)
    with torch.no_grad():
        return hf.generate(input_ids=ids, attention_mask=ids > 0, max_new_tokens=MAX_DECODE,
                           cache=EncoderDecoderCache(DynamicCache(), DynamicCache()),
                           return_dict_in_generate=True, output_scores=True, **kwargs)


@jax.jit
def _logits(params: dict, encoder_tokens: jnp.ndarray, decoder_inputs: jnp.ndarray,
            *packing: jnp.ndarray | None) -> jnp.ndarray:
    """Teacher-forced logits; `packing` = targets, segment ids and positions (t5x order)."""
    return t5.Transformer(CONFIG).apply({"params": params}, encoder_tokens, decoder_inputs,
                                        *packing)


def _until_eos(tokens: np.ndarray) -> list[list[int]]:
    """Each row up to and including its first EOS (transformers pads finished beams with EOS)."""
    rows = []
    for row in tokens.tolist():
        rows.append(row[:row.index(EOS) + 1] if EOS in row else row)
    return rows


def _log_likelihood(params: dict, inputs: jnp.ndarray, generated: jnp.ndarray) -> np.ndarray:
    """Teacher-forced log-likelihood of each generated row up to and including its first EOS.

    (Not `score_targets`, which skips target id 0: a toy model may generate id 0.)
    """
    logits = _logits(params, inputs, decoding.shift_right(generated))
    log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    token = np.take_along_axis(log_probs, np.asarray(generated)[..., None], -1)[..., 0]
    lengths = [len(row) for row in _until_eos(np.asarray(generated))]
    return np.array([row[:n].sum() for row, n in zip(token, lengths, strict=True)])


def test_logits_match_with_padding(models: tuple, inputs: np.ndarray) -> None:
    hf, params = models
    rng = np.random.default_rng(1)
    targets = rng.integers(2, CONFIG.vocab_size, (len(inputs), 10))
    targets[1, 4:] = 0
    targets[3, 7:] = 0
    decoder_inputs = np.array(decoding.shift_right(jnp.asarray(targets)))
    ids = torch.from_numpy(inputs)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=ids > 0,
                      decoder_input_ids=torch.from_numpy(decoder_inputs)).logits.numpy()
    logits = _logits(params, jnp.asarray(inputs), jnp.asarray(decoder_inputs),
                     jnp.asarray(targets))
    real = targets > 0
    np.testing.assert_allclose(np.asarray(logits)[real], expected[real], atol=1e-4, rtol=0)


def test_greedy_matches_hf_generate(models: tuple, inputs: np.ndarray) -> None:
    hf, params = models
    ours = decoding.greedy_decode(params, jnp.asarray(inputs), config=CONFIG,
                                  max_decode_length=MAX_DECODE)
    theirs = _hf_generate(hf, inputs, do_sample=False, num_beams=1)
    expected = theirs.sequences.numpy()[:, 1:]  # drop the start token
    tokens = np.asarray(ours.tokens)
    assert any(EOS in row for row in tokens.tolist()), "no sequence ended: a weak test"
    np.testing.assert_array_equal(tokens[:, :expected.shape[1]], expected)
    assert not tokens[:, expected.shape[1]:].any()
    step_log_probs = torch.stack(theirs.scores, 1).log_softmax(-1)
    chosen = torch.gather(step_log_probs, 2, theirs.sequences[:, 1:, None])[..., 0]
    expected_scores = (chosen * (theirs.sequences[:, 1:] > 0)).sum(1).numpy()
    np.testing.assert_allclose(np.asarray(ours.scores), expected_scores, atol=1e-4)


def test_beam_search_matches_hf_generate(models: tuple, inputs: np.ndarray) -> None:
    hf, params = models
    beams = 4
    ours = decoding.beam_search(params, jnp.asarray(inputs), config=CONFIG,
                                max_decode_length=MAX_DECODE, num_beams=beams, alpha=0.0)
    theirs = _hf_generate(hf, inputs, do_sample=False, num_beams=beams, length_penalty=0.0,
                          num_return_sequences=beams, early_stopping=False)
    tokens = np.asarray(ours.tokens).reshape(len(inputs) * beams, MAX_DECODE)
    assert _until_eos(tokens) == _until_eos(theirs.sequences.numpy()[:, 1:])
    np.testing.assert_allclose(np.asarray(ours.scores).ravel(),
                               theirs.sequences_scores.numpy(), atol=1e-4)
    assert np.all(np.diff(np.asarray(ours.scores), axis=1) <= 0), "beams not best-first"


def test_beam_search_with_length_penalty(models: tuple, inputs: np.ndarray) -> None:
    _, params = models
    ours = decoding.beam_search(params, jnp.asarray(inputs), config=CONFIG,
                                max_decode_length=MAX_DECODE, num_beams=3, alpha=0.6)
    generated = ours.tokens.reshape(-1, MAX_DECODE)
    log_likelihood = _log_likelihood(params, jnp.repeat(jnp.asarray(inputs), 3, axis=0),
                                     generated)
    lengths = np.array([len(row) for row in _until_eos(np.asarray(generated))])
    penalised = log_likelihood / ((5.0 + lengths) / 6.0) ** 0.6
    np.testing.assert_allclose(np.asarray(ours.scores).ravel(), penalised, atol=1e-4)


def test_score_targets_matches_hf_loss(models: tuple, inputs: np.ndarray) -> None:
    hf, params = models
    rng = np.random.default_rng(2)
    targets = rng.integers(2, CONFIG.vocab_size, (len(inputs), 8))
    targets[0, 3:] = 0
    targets[4, 6:] = 0
    ids = torch.from_numpy(inputs)
    labels = torch.from_numpy(np.where(targets > 0, targets, -100))
    with torch.no_grad():
        logits = hf(input_ids=ids, attention_mask=ids > 0, labels=labels).logits
    token_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels,
                                                  reduction="none", ignore_index=-100)
    expected = -token_nll.sum(1).numpy()
    scores = decoding.score_targets(params, jnp.asarray(inputs), jnp.asarray(targets),
                                    config=CONFIG)
    np.testing.assert_allclose(np.asarray(scores), expected, atol=1e-4)


def test_loss_matches_hf_loss(models: tuple, inputs: np.ndarray) -> None:
    hf, params = models
    rng = np.random.default_rng(3)
    targets = rng.integers(2, CONFIG.vocab_size, (len(inputs), 8))
    targets[2, 5:] = 0
    ids = torch.from_numpy(inputs)
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=ids > 0,
                      labels=torch.from_numpy(np.where(targets > 0, targets, -100))).loss.item()
    logits = _logits(params, jnp.asarray(inputs), decoding.shift_right(jnp.asarray(targets)))
    loss = cross_entropy_loss(logits, jnp.asarray(targets), z_loss=0.0,
                              loss_normalizing_factor="NUM_REAL_TARGET_TOKENS")
    assert float(loss.loss) == pytest.approx(expected, abs=1e-5)
    assert float(loss.weight_sum) == (targets > 0).sum()


def test_gradients_match_hf_backward(models: tuple, inputs: np.ndarray) -> None:
    """Every parameter's gradient of the mean target NLL equals PyTorch autograd's (this
    covers the custom VJPs of the loss and of the position-bias sum)."""
    hf, params = models
    # transformers 5 ties lm_head to the input embedding; flan_jax (like Flan-T5) does not,
    # so a copy with its own lm_head gives each of the two its own gradient.
    hf = copy.deepcopy(hf)
    hf.lm_head.weight = torch.nn.Parameter(hf.shared.weight.detach().clone())
    rng = np.random.default_rng(6)
    targets = rng.integers(2, CONFIG.vocab_size, (len(inputs), 7))
    targets[1, 4:] = 0
    ids = torch.from_numpy(inputs)
    hf.zero_grad()
    hf(input_ids=ids, attention_mask=ids > 0,
       labels=torch.from_numpy(np.where(targets > 0, targets, -100))).loss.backward()
    hf_grads = {name: p.grad.numpy() for name, p in hf.named_parameters() if p.grad is not None}

    def loss(params: dict) -> jnp.ndarray:
        logits = t5.Transformer(CONFIG).apply({"params": params}, jnp.asarray(inputs),
                                              decoding.shift_right(jnp.asarray(targets)))
        return cross_entropy_loss(logits, jnp.asarray(targets), z_loss=0.0,
                                  loss_normalizing_factor="NUM_REAL_TARGET_TOKENS").loss

    ours = flatten(jax.grad(loss)(params))
    names = name_map(CONFIG)
    assert {names[name][0] for name in hf_grads} == set(ours)
    for name, grad in hf_grads.items():
        path, transpose = names[name]
        expected = grad.T if transpose else grad
        # float32 sums in a different order: errors relative to the tensor's largest entry
        np.testing.assert_allclose(ours[path], expected, rtol=1e-3,
                                   atol=2e-4 * np.abs(expected).max(), err_msg=path)


def test_sampling_is_reproducible_and_top_k_1_is_greedy(models: tuple,
                                                        inputs: np.ndarray) -> None:
    _, params = models
    tokens = jnp.asarray(inputs)

    def sample(seed: int, **kwargs: object) -> decoding.DecodeResult:
        return decoding.sample_decode(params, tokens, jax.random.key(seed), config=CONFIG,
                                      max_decode_length=MAX_DECODE, **kwargs)

    first, again, other = (sample(seed, top_k=20, top_p=0.9) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert not np.array_equal(first.tokens, other.tokens)
    # Scores are the model's log-likelihood of what was sampled.
    np.testing.assert_allclose(first.scores, _log_likelihood(params, tokens, first.tokens),
                               atol=1e-4)
    greedy = decoding.greedy_decode(params, tokens, config=CONFIG, max_decode_length=MAX_DECODE)
    top1 = sample(5, top_k=1, temperature=0.7)
    np.testing.assert_array_equal(top1.tokens, greedy.tokens)
    np.testing.assert_allclose(top1.scores, greedy.scores, atol=1e-5)


def test_filter_logits_keeps_top_k_and_nucleus() -> None:
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))

    def kept(top_k: int, top_p: float) -> list[bool]:
        return np.isfinite(np.asarray(decoding._filter_logits(logits, top_k, top_p)))[0].tolist()

    assert kept(2, 1.0) == [True, True, False, False]
    assert kept(0, 0.7) == [True, True, False, False]
    assert kept(0, 0.81) == [True, True, True, False]
    assert kept(1, 0.9) == [True, False, False, False]


def test_decoding_batch_rows_are_independent(models: tuple, inputs: np.ndarray) -> None:
    _, params = models
    batch = decoding.greedy_decode(params, jnp.asarray(inputs), config=CONFIG,
                                   max_decode_length=MAX_DECODE)
    alone = decoding.greedy_decode(params, jnp.asarray(inputs[3:4]), config=CONFIG,
                                   max_decode_length=MAX_DECODE)
    np.testing.assert_array_equal(batch.tokens[3:4], alone.tokens)


def test_decoding_rejects_bad_input(models: tuple) -> None:
    _, params = models
    with pytest.raises(ValueError, match="integer array"):
        decoding.greedy_decode(params, jnp.ones((2, 3, 4), jnp.int32), config=CONFIG,
                               max_decode_length=4)
    with pytest.raises(ValueError, match="temperature"):
        decoding.sample_decode(params, jnp.ones((1, 4), jnp.int32), jax.random.key(0),
                               config=CONFIG, max_decode_length=4, temperature=0.0)


def _pack(parts: list[np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenates examples into one padded row with segment ids (1, 2, ...) and positions."""
    tokens = np.zeros((1, length), np.int32)
    segments = np.zeros_like(tokens)
    positions = np.zeros_like(tokens)
    start = 0
    for segment, part in enumerate(parts, 1):
        end = start + len(part)
        tokens[0, start:end], segments[0, start:end] = part, segment
        positions[0, start:end] = np.arange(len(part))
        start = end
    return tokens, segments, positions


def test_packed_examples_match_unpacked(models: tuple) -> None:
    _, params = models
    rng = np.random.default_rng(4)
    examples = [(rng.integers(2, 96, n_in), rng.integers(2, 96, n_out))
                for n_in, n_out in [(7, 5), (11, 3), (4, 6)]]
    enc, enc_seg, enc_pos = _pack([e for e, _ in examples], 26)
    targets, dec_seg, dec_pos = _pack([t for _, t in examples], 16)
    decoder_inputs = np.where(dec_pos == 0, 0, np.roll(targets, 1, axis=1))
    packed = _logits(params, enc, decoder_inputs, targets, enc_seg, dec_seg, enc_pos, dec_pos)
    # The same examples unpacked: one per row, padded.
    alone_inputs = np.zeros((len(examples), 11), np.int32)
    alone_targets = np.zeros((len(examples), 6), np.int32)
    for row, (encoder_tokens, target) in enumerate(examples):
        alone_inputs[row, :len(encoder_tokens)] = encoder_tokens
        alone_targets[row, :len(target)] = target
    alone = _logits(params, alone_inputs, decoding.shift_right(jnp.asarray(alone_targets)),
                    alone_targets)
    start = 0
    for row, (_, target) in enumerate(examples):
        np.testing.assert_allclose(packed[0, start:start + len(target)], alone[row, :len(target)],
                                   atol=1e-4)
        start += len(target)


def test_average_per_sequence_loss_is_packing_invariant() -> None:
    rng = np.random.default_rng(5)
    logits = jnp.asarray(rng.normal(size=(2, 6, 11)), jnp.float32)
    targets = jnp.array([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0]])
    unpacked = cross_entropy_loss(logits, targets, loss_normalizing_factor="AVERAGE_PER_SEQUENCE")
    packed = cross_entropy_loss(
        jnp.concatenate([logits[:1, :4], logits[1:, :2]], 1), jnp.array([[3, 4, 5, 6, 7, 8]]),
        loss_normalizing_factor="AVERAGE_PER_SEQUENCE", segment_ids=jnp.array([[1] * 4 + [2] * 2]))
    assert float(packed.loss) == pytest.approx(float(unpacked.loss), rel=1e-6)
    summed = cross_entropy_loss(logits, targets)
    per_example = [cross_entropy_loss(logits[i:i + 1], targets[i:i + 1],
                                      loss_normalizing_factor="NUM_REAL_TARGET_TOKENS").loss
                   for i in range(2)]
    assert float(unpacked.loss) == pytest.approx(float(np.mean(per_example)), rel=1e-6)
    assert float(summed.weight_sum) == 6.0


def test_z_loss_and_label_smoothing_follow_t5x() -> None:
    rng = np.random.default_rng(6)
    vocab, smoothing, z = 7, 0.1, 1e-3
    logits = rng.normal(size=(2, 3, vocab)).astype(np.float32)
    targets = np.array([[1, 2, 0], [4, 5, 6]])
    weights = (targets > 0).astype(np.float32)
    log_z = np.log(np.exp(logits).sum(-1))
    log_probs = logits - log_z[..., None]
    soft = np.full(logits.shape, smoothing / (vocab - 1))
    np.put_along_axis(soft, targets[..., None], 1 - smoothing, axis=-1)
    entropy = -((1 - smoothing) * np.log(1 - smoothing)
                + smoothing * np.log(smoothing / (vocab - 1)))
    token_loss = -(soft * log_probs).sum(-1) - entropy + z * log_z ** 2
    expected = (token_loss * weights).sum() / 10.0
    loss = cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets), z_loss=z,
                              label_smoothing=smoothing, loss_normalizing_factor=10.0)
    assert float(loss.loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss.z_loss) == pytest.approx((z * log_z ** 2 * weights).sum() / 10.0, rel=1e-5)
    with pytest.raises(ValueError, match="loss_normalizing_factor"):
        cross_entropy_loss(jnp.asarray(logits), jnp.asarray(targets),
                           loss_normalizing_factor="PER_TOKEN")
