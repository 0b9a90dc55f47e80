"""Checks of a training configuration made before any work: gin macros bound but never
used (a typo such as `--gin.BATCH_SIZ=4` is otherwise silently ignored), and the model's
vocabulary size against the vocabularies of the tasks it will see.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

import gin
import seqio

from flan_jax.errors import FlanJaxError

# The macros of t5x's run and model gin files (t5x/configs/runs/{finetune,pretrain}.gin,
# t5x/examples/t5/*/*.gin) that flan_jax.train does not read, with what to bind instead.
T5X_MACROS = {
    "USE_CACHED_TASKS": "train.use_cached",
    "RANDOM_SEED": "train.seed",
    "SHUFFLE_TRAIN_EXAMPLES": None,
    "USE_HARDWARE_RNG": None,
    "EVALUATOR_USE_MEMORY_CACHE": None,
    "EVALUATOR_NUM_EXAMPLES": "train.infer_eval_examples",
    "JSON_WRITE_N_RESULTS": None,
    "Z_LOSS": "train.z_loss",
    "LABEL_SMOOTHING": "train.label_smoothing",
    "LOSS_NORMALIZING_FACTOR": "train.loss_normalizing_factor",
    "VOCABULARY": "train.vocabulary",
    "OPTIMIZER": "train.optimizer",
    "MODEL": "MODEL_CONFIG",
    "NUM_PARTITIONS": "train.num_partitions",
    "NUM_MICROBATCHES": "train.num_microbatches",
}
_MACRO = "gin.macro"


class ConfigError(FlanJaxError):
    """The configuration cannot work; found before any work was done."""


def _references(value: Any) -> Iterator[str]:
    """Names of the macros a bound value refers to (%NAME), searched through containers."""
    if isinstance(value, gin.config.ConfigurableReference):
        scope, _, selector = value.scoped_selector.rpartition("/")
        if selector == _MACRO:
            yield scope
    elif isinstance(value, dict):
        for v in value.values():
            yield from _references(v)
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _references(v)


def unused_macros() -> dict[str, str]:
    """Macros bound in the parsed gin configuration that no binding refers to, each with
    a hint: the macro it was probably meant to be, or what flan_jax reads instead."""
    config = gin.config._CONFIG  # gin keeps bindings here; it has no public listing
    bound = {name for name, selector in config if selector == _MACRO}
    used = {ref for bindings in config.values() for v in bindings.values()
            for ref in _references(v)}
    hints = {}
    for name in sorted(bound - used):
        if name in T5X_MACROS:
            instead = T5X_MACROS[name]
            hints[name] = (f"a t5x macro that flan_jax.train does not read; bind {instead} "
                           "instead" if instead else "a t5x macro with no flan_jax equivalent")
            continue
        close = difflib.get_close_matches(name, sorted(used | set(T5X_MACROS)), n=1, cutoff=0.7)
        hints[name] = f"did you mean {close[0]}?" if close else "no binding refers to it"
    return hints


def macro_warning() -> str | None:
    """One paragraph naming every unused macro, or None."""
    hints = unused_macros()
    if not hints:
        return None
    listed = "; ".join(f"{name} ({hint})" for name, hint in hints.items())
    return (f"warning: {len(hints)} gin macro(s) set but never used, so they change nothing: "
            f"{listed}. Check the spelling (macro names are case-sensitive).")


def vocabulary_problem(vocab: seqio.Vocabulary, model_vocab_size: int, what: str) -> str | None:
    """Why a model with `model_vocab_size` logits cannot read or write `vocab`'s ids."""
    size = int(vocab.vocab_size)
    if size <= model_vocab_size:
        return None
    return (f"{what} has {size} token ids but the model's vocab_size is {model_vocab_size}: "
            f"ids {model_vocab_size}..{size - 1} have no embedding or logit")


def check_vocabulary(model_vocab_size: int, names: Iterable[str]) -> None:
    """ConfigError if a task of the named mixtures or tasks has a vocabulary larger than
    the model's embedding (each vocabulary checked once)."""
    checked: set[int] = set()
    for name in names:
        found = seqio.get_mixture_or_task(name)
        tasks = found.tasks if isinstance(found, seqio.Mixture) else [found]
        for task in tasks:
            for feature in ("inputs", "targets"):
                vocab = task.output_features[feature].vocabulary
                if id(vocab) in checked:
                    continue
                checked.add(id(vocab))
                problem = vocabulary_problem(vocab, model_vocab_size,
                                             f"task {task.name}'s {feature} vocabulary "
                                             f"({type(vocab).__name__})")
                if problem:
                    padded = -(-int(vocab.vocab_size) // 128) * 128
                    raise ConfigError(
                        f"{problem}. Training would read or predict tokens the model does not "
                        f"have. Set t5.T5Config.vocab_size to at least {vocab.vocab_size} "
                        f"(e.g. --gin.t5.T5Config.vocab_size={padded}, a multiple of 128) or "
                        "give the tasks the vocabulary the model was built for "
                        "(train.vocabulary / $FLAN_JAX_VOCAB).")
