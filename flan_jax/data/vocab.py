"""The vocabulary tasks are tokenized with.

Default: the T5 SentencePiece model at its Cloud Storage path (what Flan-T5
uses; read only when first needed). Override with a local `.model` file through
the FLAN_JAX_VOCAB environment variable or the gin binding
`flan_jax.data.vocab.get_vocabulary.path` (the t5x gin files bind it to their SPM_PATH); the
value `byte` selects seqio's ByteVocabulary (tests and tiny demos).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import gin
import seqio

from flan_jax.errors import FlanJaxError

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
# `flan_jax.data.vocab.get_vocabulary` can only have been parsed if this module was imported
# before the lock (a gin file's `from flan_jax import vocab`), so registering only while
# the configuration is open loses nothing.
if not gin.config_is_locked():
    get_vocabulary = gin.configurable(get_vocabulary, module="flan_jax.data.vocab")


def resolve(name: str) -> seqio.Vocabulary:
    """A task's `vocabulary:` field: 'default', 'byte', or a SentencePiece file."""
    return get_vocabulary() if name == "default" else _build(name, DEFAULT_EXTRA_IDS)


def readable(vocabulary: seqio.Vocabulary) -> seqio.Vocabulary:
    """`vocabulary`, loaded now: a SentencePiece file that cannot be read (the gs:// default
    offline, a damaged file) is a FlanJaxError saying what to set instead of a TensorFlow
    traceback from the first tokenization."""
    try:
        vocabulary.vocab_size  # noqa: B018 - reads the model file
    except Exception as e:  # noqa: BLE001 - TensorFlow, protobuf, sentencepiece: one cause
        path = getattr(vocabulary, "sentencepiece_model_file", type(vocabulary).__name__)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FlanJaxError(
            f"the vocabulary {path} cannot be read ({reason}). Offline, set ${ENV_VAR} (or the "
            "gin binding flan_jax.data.vocab.get_vocabulary.path) to a local SentencePiece model: "
            "the spiece.model of a Hugging Face google/flan-t5-* download is the T5 "
            "vocabulary; or to 'byte' for models trained with the byte vocabulary.") from None
    return vocabulary


def for_checkpoint(checkpoint_path: str | None, spec: str | None = None) -> seqio.Vocabulary:
    """The vocabulary to use with a checkpoint, loaded (see `readable`): `spec` if given,
    else the spiece.model beside a Hugging Face checkpoint, else `get_vocabulary()`."""
    if spec:
        return readable(resolve(spec))
    spiece = Path(checkpoint_path).expanduser() / "spiece.model" if checkpoint_path else None
    if spiece is not None and spiece.is_file():
        return readable(resolve(str(spiece)))
    return readable(get_vocabulary())
