"""The vocabulary a training run records beside its checkpoints, and finding it again."""

from __future__ import annotations

import json

import pytest
import sentencepiece
import seqio
import tensorflow as tf

from flan_jax.data import vocab
from flan_jax.errors import FlanJaxError

TEXT = "the quick brown fox jumps over the lazy dog; 12 + 7 = 19\n" * 20


@pytest.fixture
def spm(tmp_path) -> seqio.SentencePieceVocabulary:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT.splitlines()), model_prefix=str(tmp_path / "spm"),
        vocab_size=40, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2, num_threads=1)
    return seqio.SentencePieceVocabulary(str(tmp_path / "spm.model"), extra_ids=7)


def _task(name: str, inputs: seqio.Vocabulary, targets: seqio.Vocabulary) -> str:
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(
            lambda split, shuffle_files: tf.data.Dataset.from_tensors({"inputs": "a",
                                                                       "targets": "b"}),
            splits=["train"]),
        output_features={"inputs": seqio.Feature(inputs), "targets": seqio.Feature(targets)})
    return name


def test_a_recorded_sentencepiece_vocabulary_is_found_from_the_run_and_its_steps(spm, tmp_path):
    run = tmp_path / "run"
    (run / "6").mkdir(parents=True)
    assert vocab.record(run, _task("vocab_test_spm", spm, spm))
    assert (run / "spiece.model").read_bytes() == (tmp_path / "spm.model").read_bytes()
    for where in (run, run / "6"):
        found, named_by = vocab.of_checkpoint(where)
        assert named_by == run / "vocabulary.json"
        assert found.sentencepiece_model_file == str(run / "spiece.model")
        assert found.extra_ids == 7 and found.vocab_size == spm.vocab_size
        assert list(found.encode(TEXT)) == list(spm.encode(TEXT))
    assert vocab.of_checkpoint(tmp_path) is None


def test_byte_and_mixed_vocabularies(spm, tmp_path):
    byte = seqio.ByteVocabulary()
    assert vocab.record(tmp_path, _task("vocab_test_byte", byte, byte))
    assert json.loads((tmp_path / "vocabulary.json").read_text()) == {"vocabulary": "byte"}
    assert vocab.of_checkpoint(tmp_path)[0] == byte
    # Two vocabularies: nothing to record, and the earlier record would now be wrong.
    assert not vocab.record(tmp_path, _task("vocab_test_mixed", byte, spm))
    assert not (tmp_path / "vocabulary.json").exists()


def test_hugging_face_tokenizer_files_name_the_vocabulary(spm, tmp_path):
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "ByT5Tokenizer"}')
    assert vocab.of_checkpoint(tmp_path) == (seqio.ByteVocabulary(),
                                             tmp_path / "tokenizer_config.json")
    (tmp_path / "spiece.model").write_bytes((tmp_path / "spm.model").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text('{"extra_ids": 7}')
    found, named_by = vocab.of_checkpoint(tmp_path)
    assert named_by == tmp_path / "spiece.model" and found == spm.__class__(
        str(tmp_path / "spiece.model"), extra_ids=7)


def test_a_damaged_record_is_named(tmp_path):
    (tmp_path / "vocabulary.json").write_text('{"vocabulary": "sentencepiece", "model": '
                                              '"spiece.model", "extra_ids": 100}')
    with pytest.raises(FlanJaxError, match=f"{tmp_path / 'vocabulary.json'}: not a usable "
                                           "vocabulary record .*spiece.model is missing"):
        vocab.of_checkpoint(tmp_path)
