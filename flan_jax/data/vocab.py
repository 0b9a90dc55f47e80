"""The vocabulary tasks are tokenized with.

Default: the T5 SentencePiece model at its Cloud Storage path (what Flan-T5
uses; read only when first needed). Override with a local `.model` file through
the FLAN_JAX_VOCAB environment variable or the gin binding
`flan_jax.data.vocab.get_vocabulary.path` (the t5x gin files bind it to their SPM_PATH); the
value `byte` selects seqio's ByteVocabulary (tests and tiny demos).

A training run records its vocabulary in MODEL_DIR/vocabulary.json (a SentencePiece model
is copied beside it as spiece.model), so that a checkpoint is later read, decoded and
exported with the vocabulary it was trained with (`of_checkpoint`).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import gin
import seqio

from flan_jax.errors import FlanJaxError

DEFAULT_SPM_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
DEFAULT_EXTRA_IDS = 100
ENV_VAR = "FLAN_JAX_VOCAB"
RECORD = "vocabulary.json"
SPIECE = "spiece.model"


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


def model_bytes(vocabulary: seqio.SentencePieceVocabulary) -> bytes:
    """The SentencePiece model file as trained (seqio's `sp_model` has its extra ids added)."""
    import tensorflow as tf

    with tf.io.gfile.GFile(vocabulary.sentencepiece_model_file, "rb") as f:
        return f.read()


def record(directory: Path, mixture_or_task: str) -> bool:
    """Writes `directory`/vocabulary.json (and spiece.model) when the inputs and targets of
    the seqio tasks of `mixture_or_task` share one byte or SentencePiece vocabulary;
    returns whether it did."""
    found = seqio.get_mixture_or_task(mixture_or_task)
    distinct: list[seqio.Vocabulary] = []
    for task in found.tasks if isinstance(found, seqio.Mixture) else [found]:
        for feature in task.output_features.values():
            if feature.vocabulary not in distinct:
                distinct.append(feature.vocabulary)
    vocabulary = distinct[0] if len(distinct) == 1 else None
    if isinstance(vocabulary, seqio.ByteVocabulary) and not vocabulary.extra_ids:
        entry = {"vocabulary": "byte"}
    elif isinstance(vocabulary, seqio.SentencePieceVocabulary):
        (directory / SPIECE).write_bytes(model_bytes(vocabulary))
        entry = {"vocabulary": "sentencepiece", "model": SPIECE,
                 "extra_ids": vocabulary.extra_ids,
                 "trained_from": vocabulary.sentencepiece_model_file}
    else:  # a record of an earlier run in this directory would now be wrong
        (directory / RECORD).unlink(missing_ok=True)
        return False
    (directory / RECORD).write_text(json.dumps(entry, indent=2) + "\n")
    return True


def _recorded(path: Path) -> seqio.Vocabulary:
    """The vocabulary a vocabulary.json names; FlanJaxError naming the file if it is damaged."""
    try:
        entry = json.loads(path.read_text())
        if entry["vocabulary"] == "byte":
            return seqio.ByteVocabulary()
        if entry["vocabulary"] == "sentencepiece":
            model = path.parent / entry["model"]
            if not model.is_file():
                raise ValueError(f"{model} is missing")
            return seqio.SentencePieceVocabulary(str(model), extra_ids=int(entry["extra_ids"]))
        raise ValueError(f"unknown vocabulary {entry['vocabulary']!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise FlanJaxError(f"{path}: not a usable vocabulary record ({e}); restore it, or "
                           "name the vocabulary yourself (--vocab)") from None


def _hf_tokenizer_config(directory: Path) -> dict:
    try:
        config = json.loads((directory / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def of_checkpoint(checkpoint_path: str | os.PathLike) -> tuple[seqio.Vocabulary, Path] | None:
    """The vocabulary a checkpoint says it was trained with, and the file that says so: a
    training run's vocabulary.json (in the run directory above a step directory too), a
    Hugging Face directory's spiece.model or ByT5Tokenizer config; None if none says."""
    path = Path(checkpoint_path).expanduser()
    if (path / RECORD).is_file():
        return _recorded(path / RECORD), path / RECORD
    config = _hf_tokenizer_config(path)
    if (path / SPIECE).is_file():
        extra_ids = int(config.get("extra_ids", DEFAULT_EXTRA_IDS))
        return _build(str(path / SPIECE), extra_ids), path / SPIECE
    if config.get("tokenizer_class") == "ByT5Tokenizer":  # its extra ids pad the model
        return seqio.ByteVocabulary(), path / "tokenizer_config.json"
    is_step = path.name.isdigit() or path.name.startswith("checkpoint_")
    if is_step and (path.parent / RECORD).is_file():
        return _recorded(path.parent / RECORD), path.parent / RECORD
    return None


def for_checkpoint(checkpoint_path: str | None, spec: str | None = None) -> seqio.Vocabulary:
    """The vocabulary to use with a checkpoint, loaded (see `readable`): `spec` if given,
    else the one the checkpoint names (`of_checkpoint`), else `get_vocabulary()`."""
    if spec:
        return readable(resolve(spec))
    found = of_checkpoint(checkpoint_path) if checkpoint_path else None
    return readable(found[0] if found else get_vocabulary())
