"""The vocabulary tasks are tokenized with.

Default: the T5 SentencePiece model at its Cloud Storage path (what Flan-T5
uses; read only when first needed). Override with a local `.model` file through
the FLAN_JAX_VOCAB environment variable or the gin binding
`flan_jax.vocab.get_vocabulary.path` (the t5x gin files bind it to their SPM_PATH); the
value `byte` selects seqio's ByteVocabulary (tests and tiny demos).
"""

from __future__ import annotations

import functools
import os

import gin
import seqio

DEFAULT_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100
ENV_VAR = "FLAN_JAX_VOCAB"


@functools.cache
def _build(path: str, extra_ids: int) -> seqio.Vocabulary:
    if path == "byte":
        return seqio.ByteVocabulary()
    if "://" not in path and not os.path.isfile(os.path.expanduser(path)):
        raise FileNotFoundError(
            f"SentencePiece model {path!r} not found; set ${ENV_VAR} to a local .model file "
            "or to 'byte'")
    return seqio.SentencePieceVocabulary(os.path.expanduser(path), extra_ids=extra_ids)


def get_vocabulary(path: str | None = None, extra_ids: int = DEFAULT_EXTRA_IDS) -> seqio.Vocabulary:
    """The vocabulary named by `path`, else by $FLAN_JAX_VOCAB, else the T5 default."""
    spec = path or os.environ.get(ENV_VAR) or DEFAULT_SPM_PATH
    return _build(spec, extra_ids)


# t5x parses and locks gin, then imports MIXTURE_OR_TASK_MODULE (flan_jax.catalog imports
# this module), and declaring a configurable then is an error. A binding of
# `flan_jax.vocab.get_vocabulary` can only have been parsed if this module was imported
# before the lock (a gin file's `from flan_jax import vocab`), so registering only while
# the configuration is open loses nothing.
if not gin.config_is_locked():
    get_vocabulary = gin.configurable(get_vocabulary, module="flan_jax.vocab")


def resolve(name: str) -> seqio.Vocabulary:
    """A task's `vocabulary:` field: 'default', 'byte', or a SentencePiece file."""
    return get_vocabulary() if name == "default" else _build(name, DEFAULT_EXTRA_IDS)
