"""Hugging Face tokenizer files: transformers' AutoTokenizer encodes text as seqio does.

The reference is seqio itself: SentencePieceVocabulary(model, extra_ids=100) and
ByteVocabulary, whose ids + EOS are what the model was trained on. SentencePiece models are
trained here on the demo's own prompts: with T5's settings (SentencePiece's defaults), the
demo's (`flan_jax.data.demo.vocab`), and two variants that T5Tokenizer cannot reproduce.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sentencepiece
import seqio
import transformers

from flan_jax.data.demo.vocab import training_text
from flan_jax.errors import FlanJaxError
from flan_jax.interop.hf_tokenizer import TokenizerFiles, byte_tokenizer, sentencepiece_tokenizer

# Text a prompt may hold: newlines, runs of spaces and tabs, edges, accents, symbols and
# scripts the models never saw, digits, a no-break space, an empty string, sentinels.
TEXTS = [
    "What is 12 + 7?\nOptions:\n- 19\n- 20",
    "  two  spaces, a tab\tand trailing space ",
    "\n\nQ: leading newlines\nA:",
    "héllo wörld ☃ 日本語 ﬁ ① Ａ",
    "x 1234.5 y, 0.07% of 100000",
    "a\u00a0b",
    "",
    "fill in <extra_id_0> and <extra_id_1> here",
]
SENTINEL = "<extra_id_"


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Rendered inputs and targets of the demo's zero-shot tasks."""
    return training_text(examples_per_task=3)


def _train(directory: Path, texts: list[str], name: str, **settings) -> Path:
    """A SentencePiece model with T5's ids (pad 0, EOS 1, UNK 2) unless `settings` differ."""
    settings = dict(vocab_size=400, pad_id=0, eos_id=1, unk_id=2, bos_id=-1) | settings
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(directory / name), num_threads=1,
        minloglevel=2, **settings)
    return directory / f"{name}.model"


@pytest.fixture(scope="module")
def models(prompts, demo_spm, tmp_path_factory) -> dict[str, Path]:
    """SentencePiece models by name."""
    directory = tmp_path_factory.mktemp("spm")
    return {
        "t5": _train(directory, prompts, "t5"),
        "demo": demo_spm,
        "byte_fallback": _train(directory, prompts, "bf", byte_fallback=True),
        "no_dummy_prefix": _train(directory, prompts, "nodummy", byte_fallback=True,
                                  add_dummy_prefix=False),
    }


def _load(files: TokenizerFiles, directory: Path):
    directory.mkdir()
    for name, content in files.files.items():
        (directory / name).write_bytes(content)
    return transformers.AutoTokenizer.from_pretrained(directory)


def _assert_encodes_like(tokenizer, vocabulary: seqio.Vocabulary, texts: list[str]) -> None:
    for text in texts:
        expected = [*vocabulary.encode(text), vocabulary.eos_id]
        ids = tokenizer(text)["input_ids"]
        assert ids == expected, text
        if vocabulary.unk_id not in expected and SENTINEL not in text:
            assert tokenizer.decode(ids, skip_special_tokens=True) == vocabulary.decode(ids)


@pytest.mark.parametrize("name, tokenizer_class", [
    ("t5", "T5Tokenizer"),
    ("demo", "TokenizersBackend"),
    ("byte_fallback", "TokenizersBackend"),
    ("no_dummy_prefix", "TokenizersBackend"),
])
def test_sentencepiece_tokenizer_encodes_like_seqio(models, prompts, name, tokenizer_class,
                                                    tmp_path):
    model = models[name]
    files = sentencepiece_tokenizer(model.read_bytes(), 100)
    assert files.files["spiece.model"] == model.read_bytes()  # as trained, no extra ids
    tokenizer = _load(files, tmp_path / "hf")
    assert type(tokenizer).__name__ == tokenizer_class
    vocabulary = seqio.SentencePieceVocabulary(str(model), extra_ids=100)
    assert len(tokenizer) == vocabulary.vocab_size
    _assert_encodes_like(tokenizer, vocabulary, TEXTS + prompts)
    assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1


def test_demo_vocabulary_says_why_t5_tokenizer_would_not_do(models):
    summary = sentencepiece_tokenizer(models["demo"].read_bytes(), 100).summary
    assert "T5Tokenizer would not reproduce this SentencePiece model" in summary
    assert "falls back to bytes" in summary and "keeps newlines or repeated spaces" in summary


def test_byte_tokenizer_encodes_like_seqio(prompts, tmp_path):
    """The tiny presets: 259 byte ids in a model of 384 (the rest: extra ids, as in ByT5)."""
    tokenizer = _load(byte_tokenizer(384), tmp_path / "hf")
    assert type(tokenizer).__name__ == "ByT5Tokenizer"
    assert len(tokenizer) == 384
    vocabulary = seqio.ByteVocabulary()
    # The sentinels' text is bytes to seqio; to ByT5Tokenizer, one of its extra ids.
    _assert_encodes_like(tokenizer, vocabulary, [t for t in TEXTS if SENTINEL not in t] + prompts)
    assert tokenizer.decode([72, 108, 1, 300, 383, 0], skip_special_tokens=True) == "Ei"


def test_unusable_sentencepiece_models_are_refused(prompts, tmp_path):
    bpe = _train(tmp_path, prompts, "bpe", model_type="bpe")
    with pytest.raises(FlanJaxError, match="only unigram models"):
        sentencepiece_tokenizer(bpe.read_bytes(), 100)
    # SentencePiece's own ids: no pad, unk 0, bos 1, eos 2.
    ids = _train(tmp_path, prompts, "ids", pad_id=-1, unk_id=0, bos_id=1, eos_id=2)
    with pytest.raises(FlanJaxError, match="pad, EOS and UNK ids -1, 2, 0; T5 models use 0, 1, 2"):
        sentencepiece_tokenizer(ids.read_bytes(), 100)
    with pytest.raises(FlanJaxError, match="not a SentencePiece model"):
        sentencepiece_tokenizer(b"junk", 100)
