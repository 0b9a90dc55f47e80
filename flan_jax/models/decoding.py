"""Decoding with a key/value cache: greedy, beam search, temperature sampling, and scoring.

Each entry point is one jitted function (compiled once per input shape and static
setting): the encoder runs once, the decoder cache is allocated once, and the token loop
is a `lax.while_loop` of single-token decoder steps that ends when every sequence has
produced EOS (id 1) or `max_decode_length` tokens. The decoder starts from id 0.

Returned tokens exclude the start token and are 0 (padding) after a sequence's EOS; trim
them at the first EOS, not at the first 0 (a model may generate id 0). Scores are sums of the model's log-probabilities of the returned tokens (EOS included);
beam-search scores are further divided by the t5x length penalty.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from flan_jax.models import layout
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import Transformer

Array = jax.Array
Cache = Any
StepFn = Callable[[Cache, Array], tuple[Array, Cache]]

PAD_ID = 0
EOS_ID = 1
_NEG = -1.0e9  # score of an impossible beam (finite, so sums never produce NaN)


class DecodeResult(NamedTuple):
    """Generated tokens and their scores.

    greedy / sampling: tokens [batch, max_decode_length], scores [batch].
    beam search: tokens [batch, num_beams, max_decode_length], scores [batch, num_beams],
    best beam first.
    """

    tokens: Array
    scores: Array


def length_penalty(length: Array | int, alpha: float) -> Array:
    """t5x/GNMT brevity penalty ((5 + length) / 6) ** alpha; 1 when alpha is 0."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _check_inputs(encoder_input_tokens: Array, max_decode_length: int | None = None) -> None:
    """ValueError for inputs that are not [batch, length] integers or a non-positive length."""
    if encoder_input_tokens.ndim != 2 or not jnp.issubdtype(encoder_input_tokens.dtype,
                                                            jnp.integer):
        raise ValueError("encoder_input_tokens must be an integer array [batch, length], got "
                         f"{encoder_input_tokens.dtype}{list(encoder_input_tokens.shape)}")
    if max_decode_length is None:
        return
    if not isinstance(max_decode_length, int) or max_decode_length < 1:
        raise ValueError(f"max_decode_length must be a positive int, got {max_decode_length!r}")


def _start(params: Any, config: T5Config, encoder_input_tokens: Array, max_decode_length: int,
           copies: int = 1) -> tuple[Cache, StepFn]:
    """Runs the encoder once and builds the decoder cache; returns (cache, step).

    With `copies` > 1 every example is repeated that many times (beams), adjacent.
    `step(cache, tokens[batch])` feeds one token per sequence and returns float32 logits
    [batch, vocab] for the next position and the updated cache. A scanned model decodes
    per layer: a scanned decode step would copy every layer's cache through the loop.
    """
    if config.scan_layers:
        params, config = layout.to_per_layer(params), config.replace(scan_layers=False)
    model = Transformer(config)
    variables = {"params": params}
    encoded = model.apply(variables, encoder_input_tokens, method=Transformer.encode)
    if copies > 1:
        encoded = jnp.repeat(encoded, copies, axis=0)
        encoder_input_tokens = jnp.repeat(encoder_input_tokens, copies, axis=0)
    batch = encoded.shape[0]
    decoder_tokens = jnp.zeros((batch, max_decode_length), jnp.int32)
    _, state = model.apply(variables, encoded, encoder_input_tokens, decoder_tokens,
                           decode=True, method=Transformer.decode, mutable=["cache"])

    def step(cache: Cache, tokens: Array) -> tuple[Array, Cache]:
        logits, state = model.apply({**variables, "cache": cache}, encoded,
                                    encoder_input_tokens, tokens[:, None], decode=True,
                                    method=Transformer.decode, mutable=["cache"])
        return logits[:, 0].astype(jnp.float32), state["cache"]

    return state["cache"], step


def _token_loop(step: StepFn, cache: Cache, batch: int, max_decode_length: int, eos_id: int,
                choose: Callable[[Array, Array], Array]) -> DecodeResult:
    """One sequence per row: `choose(logits, step_index)` picks each next token."""

    def cond(state: tuple) -> Array:
        i, _, _, done, _, _ = state
        return (i < max_decode_length) & ~jnp.all(done)

    def body(state: tuple) -> tuple:
        i, last, tokens, done, scores, cache = state
        logits, cache = step(cache, last)
        log_probs = jax.nn.log_softmax(logits)
        token = jnp.where(done, PAD_ID, choose(logits, i))
        token_log_prob = jnp.take_along_axis(log_probs, token[:, None], axis=1)[:, 0]
        scores = scores + jnp.where(done, 0.0, token_log_prob)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, i))
        return i + 1, token, tokens, done | (token == eos_id), scores, cache

    init = (jnp.int32(0), jnp.full((batch,), PAD_ID, jnp.int32),
            jnp.zeros((batch, max_decode_length), jnp.int32), jnp.zeros((batch,), bool),
            jnp.zeros((batch,), jnp.float32), cache)
    _, _, tokens, _, scores, _ = jax.lax.while_loop(cond, body, init)
    return DecodeResult(tokens, scores)


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "eos_id"))
def greedy_decode(params: Any, encoder_input_tokens: Array, *, config: T5Config,
                  max_decode_length: int, eos_id: int = EOS_ID) -> DecodeResult:
    """Most likely next token at every step, for each row of `encoder_input_tokens`."""
    _check_inputs(encoder_input_tokens, max_decode_length)
    cache, step = _start(params, config, encoder_input_tokens, max_decode_length)
    return _token_loop(step, cache, encoder_input_tokens.shape[0], max_decode_length, eos_id,
                       lambda logits, _: jnp.argmax(logits, axis=-1).astype(jnp.int32))


def _filter_logits(logits: Array, top_k: int, top_p: float) -> Array:
    """Keeps the `top_k` largest logits (0: all) and the smallest set of tokens whose
    probability reaches `top_p` (1.0: all); the rest become -inf."""
    if top_k:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        ordered = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(ordered, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        threshold = jnp.min(jnp.where(mass_before < top_p, ordered, jnp.inf), axis=-1,
                            keepdims=True)
        logits = jnp.where(logits < threshold, -jnp.inf, logits)
    return logits


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "temperature",
                                             "top_k", "top_p", "eos_id"))
def sample_decode(params: Any, encoder_input_tokens: Array, rng: Array, *, config: T5Config,
                  max_decode_length: int, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, eos_id: int = EOS_ID) -> DecodeResult:
    """Temperature sampling, optionally restricted to the top-k tokens and/or nucleus top-p.

    Reproducible for a given `rng`; `top_k=1` is greedy decoding. Scores are the model's
    log-probabilities (before temperature and filtering), useful for self-consistency.
    """
    _check_inputs(encoder_input_tokens, max_decode_length)
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0 (use greedy_decode for 0), got {temperature}")
    if not isinstance(top_k, int) or not 0 <= top_k <= config.vocab_size:
        raise ValueError(f"top_k must be an int in [0, vocab_size], got {top_k!r}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")

    def choose(logits: Array, i: Array) -> Array:
        filtered = _filter_logits(logits / temperature, top_k, top_p)
        return jax.random.categorical(jax.random.fold_in(rng, i), filtered).astype(jnp.int32)

    cache, step = _start(params, config, encoder_input_tokens, max_decode_length)
    return _token_loop(step, cache, encoder_input_tokens.shape[0], max_decode_length, eos_id,
                       choose)


def _reorder_self_attention_cache(cache: Cache, rows: Array) -> Cache:
    """Takes rows `rows` of every self-attention key/value cache (the beams that survive).

    Cross-attention caches are identical for all beams of an example and stay as they are.
    """

    def take(path: tuple, x: Array) -> Array:
        names = [getattr(p, "key", None) for p in path]
        if "self_attention" in names and names[-1] in ("cached_key", "cached_value"):
            return jnp.take(x, rows, axis=0)
        return x

    return jax.tree_util.tree_map_with_path(take, cache)


def _take_beams(x: Array, beams: Array) -> Array:
    """x [batch, n, ...] -> x[b, beams[b, j], ...] for beams [batch, m]."""
    index = beams.reshape(beams.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, index, axis=1)


@functools.partial(jax.jit, static_argnames=("config", "max_decode_length", "num_beams", "alpha",
                                             "eos_id"))
def beam_search(params: Any, encoder_input_tokens: Array, *, config: T5Config,
                max_decode_length: int, num_beams: int = 4, alpha: float = 0.6,
                eos_id: int = EOS_ID) -> DecodeResult:
    """Beam search with the t5x length penalty ((5 + length) / 6) ** alpha (t5x default 0.6).

    Each step keeps the 2 * num_beams best extensions of the live beams; the best
    num_beams of them that did not just end continue, and those among the best num_beams
    that end (EOS, or reaching max_decode_length) compete for the finished slots with
    score log-prob / penalty(length). The loop stops early once no live beam can beat the
    worst finished one. With alpha=0 this is the algorithm of Hugging Face
    `generate(num_beams=k, length_penalty=0.0)` and gives the same beams (with alpha != 0
    they differ: Hugging Face divides by length ** alpha instead).
    """
    _check_inputs(encoder_input_tokens, max_decode_length)
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be a positive int, got {num_beams!r}")
    if 2 * num_beams > config.vocab_size:
        raise ValueError(f"num_beams={num_beams} needs a vocabulary of at least {2 * num_beams}")
    batch, k, length = encoder_input_tokens.shape[0], num_beams, max_decode_length
    cache, step = _start(params, config, encoder_input_tokens, length, copies=k)
    first_rows = (jnp.arange(batch) * k)[:, None]
    is_top_k = jnp.arange(2 * k) < k

    def cond(state: tuple) -> Array:
        i, open_ = state[0], state[-1]
        return (i < length) & jnp.any(open_)

    def body(state: tuple) -> tuple:
        i, live_seqs, live_scores, fin_seqs, fin_scores, fin_flags, cache, open_ = state
        last = jnp.where(i > 0, live_seqs[:, :, jnp.maximum(i - 1, 0)], PAD_ID)
        logits, cache = step(cache, last.reshape(-1))
        vocab = logits.shape[-1]
        log_probs = jax.nn.log_softmax(logits).reshape(batch, k, vocab)
        candidates = (live_scores[:, :, None] + log_probs).reshape(batch, k * vocab)
        top_scores, top_index = jax.lax.top_k(candidates, 2 * k)
        source, token = top_index // vocab, (top_index % vocab).astype(jnp.int32)
        seqs = _take_beams(live_seqs, source).at[:, :, i].set(token)
        ends = (token == eos_id) | (i == length - 1)

        live_scores, keep = jax.lax.top_k(jnp.where(ends, top_scores + _NEG, top_scores), k)
        live_seqs = _take_beams(seqs, keep)
        cache = _reorder_self_attention_cache(
            cache, (first_rows + _take_beams(source, keep)).reshape(-1))

        new_finished = ends & is_top_k & open_[:, None]
        new_scores = jnp.where(new_finished, top_scores / length_penalty(i + 1, alpha), _NEG)
        fin_scores, keep = jax.lax.top_k(jnp.concatenate([fin_scores, new_scores], 1), k)
        fin_seqs = _take_beams(jnp.concatenate([fin_seqs, seqs], 1), keep)
        fin_flags = _take_beams(jnp.concatenate([fin_flags, new_finished], 1), keep)

        # Best final score a live beam can reach: its log-prob only falls, so the bound is
        # at the length where the penalty helps most (the longest when alpha >= 0).
        bound_length = length if alpha >= 0 else i + 2
        best_possible = live_scores[:, 0] / length_penalty(bound_length, alpha)
        worst_finished = jnp.where(jnp.all(fin_flags, axis=1), fin_scores[:, -1], _NEG)
        open_ = open_ & (best_possible > worst_finished)
        return i + 1, live_seqs, live_scores, fin_seqs, fin_scores, fin_flags, cache, open_

    seqs = jnp.zeros((batch, k, length), jnp.int32)
    init = (jnp.int32(0), seqs, jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, _NEG), (batch, 1)),
            seqs, jnp.full((batch, k), _NEG), jnp.zeros((batch, k), bool), cache,
            jnp.ones((batch,), bool))
    state = jax.lax.while_loop(cond, body, init)
    return DecodeResult(state[3], state[4])


def shift_right(targets: Array, start_id: int = PAD_ID) -> Array:
    """Teacher-forcing decoder inputs: `start_id` followed by targets[:, :-1]."""
    start = jnp.full((targets.shape[0], 1), start_id, targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


@functools.partial(jax.jit, static_argnames=("config",))
def score_targets(params: Any, encoder_input_tokens: Array, decoder_target_tokens: Array, *,
                  config: T5Config) -> Array:
    """Log-likelihood [batch] of each row's target tokens (0 = padding, not scored).

    Teacher forced, one forward pass; the basis of rank classification: score every
    (input, answer option) pair and pick the option with the highest log-likelihood.
    """
    _check_inputs(encoder_input_tokens)
    if decoder_target_tokens.ndim != 2 or decoder_target_tokens.shape[0] != \
            encoder_input_tokens.shape[0]:
        raise ValueError("decoder_target_tokens must be [batch, length] with the batch of "
                         f"encoder_input_tokens, got {list(decoder_target_tokens.shape)}")
    logits = Transformer(config).apply(
        {"params": params}, encoder_input_tokens, shift_right(decoder_target_tokens),
        decoder_target_tokens=decoder_target_tokens)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    token_log_probs = jnp.take_along_axis(log_probs, decoder_target_tokens[..., None], -1)[..., 0]
    return jnp.sum(jnp.where(decoder_target_tokens > 0, token_log_probs, 0.0), axis=1)
