"""Hugging Face tokenizer files for the vocabulary a model was trained with.

`transformers.AutoTokenizer.from_pretrained(dir)` must then encode text to the ids seqio
gave the model in training (its ids + EOS):

    byte vocabulary     tokenizer_config.json naming ByT5Tokenizer (bytes + 3, no files)
                        with the model's ids above 258 as its extra ids
    SentencePiece       spiece.model + tokenizer_config.json naming T5Tokenizer, when the
                        model is normalised the way T5Tokenizer assumes (T5's own is);
                        otherwise (byte fallback, kept newlines or repeated spaces,
                        user-defined pieces: the demo's model) also tokenizer.json, a
                        pipeline that follows the model's own settings, loaded as
                        PreTrainedTokenizerFast. spiece.model is always the file as trained,
                        without seqio's extra ids.

The files are computed in memory, before anything is written. Neither transformers nor
tokenizers is needed to write them.
"""

from __future__ import annotations

import base64
import json
from typing import Any, NamedTuple

from flan_jax.errors import FlanJaxError

SPIECE = "spiece.model"
# Ids the T5 models (and their config.json) are built around.
_PAD, _EOS, _UNK = 0, 1, 2
_BYTE_IDS = 3 + 256
_CLEANUP = {"clean_up_tokenization_spaces": False}  # decode as SentencePiece does


class TokenizerFiles(NamedTuple):
    """File name -> contents of a Hugging Face tokenizer, and one line saying what it is."""

    files: dict[str, bytes]
    summary: str


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def _special_tokens(pad: str, eos: str, unk: str) -> dict[str, str]:
    return {"eos_token": eos, "pad_token": pad, "unk_token": unk}


def byte_tokenizer(model_vocab_size: int) -> TokenizerFiles:
    """ByT5Tokenizer: UTF-8 bytes shifted by the three special ids, as seqio.ByteVocabulary;
    the model's ids above those 259 (padding, as in ByT5) are its extra ids, so that
    decoding any id the model emits works (and drops them, as seqio does)."""
    special = _special_tokens("<pad>", "</s>", "<unk>")
    extra_ids = max(model_vocab_size - _BYTE_IDS, 0)
    config = {"tokenizer_class": "ByT5Tokenizer", "extra_ids": extra_ids, **special, **_CLEANUP}
    files = {"tokenizer_config.json": _json(config), "special_tokens_map.json": _json(special)}
    return TokenizerFiles(files, f"ByT5Tokenizer (UTF-8 bytes, as seqio.ByteVocabulary; "
                                 f"{extra_ids} extra ids up to the model's vocab_size)")


def _parse(model: bytes) -> Any:
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    try:
        return sentencepiece_model_pb2.ModelProto.FromString(model)
    except DecodeError as e:
        raise FlanJaxError(f"the vocabulary is not a SentencePiece model ({e})") from None


def _t5_tokenizer_misfits(proto: Any) -> list[str]:
    """How the model differs from what T5Tokenizer rebuilds from spiece.model (a unigram
    model over NFKC text whose whitespace collapses to single spaces); [] if it does not."""
    trainer, normalizer = proto.trainer_spec, proto.normalizer_spec
    misfits = []
    if trainer.byte_fallback:
        misfits.append("it falls back to bytes")
    if not normalizer.remove_extra_whitespaces or not normalizer.name.startswith("nmt_nfkc"):
        misfits.append("it keeps newlines or repeated spaces")
    if any(p.type == p.USER_DEFINED for p in proto.pieces):
        misfits.append("it has user-defined pieces")
    if not normalizer.add_dummy_prefix:
        misfits.append("it adds no space before the text")
    return misfits


def _tokenizer_json(proto: Any, extra_ids: int) -> dict[str, Any]:
    """A `tokenizers` pipeline that encodes like SentencePiece with seqio's extra ids (the
    pieces '▁<extra_id_N>', appended last to first with SentencePiece's score for
    user-defined pieces, 0, which no segmentation into other pieces beats), then EOS."""
    normalizer, trainer = proto.normalizer_spec, proto.trainer_spec
    pieces = [(p.piece, p.score) for p in proto.pieces]
    pieces += [(f"▁<extra_id_{i}>", 0.0) for i in reversed(range(extra_ids))]

    def replace(pattern: dict[str, str], content: str) -> dict[str, Any]:
        return {"type": "Replace", "pattern": pattern, "content": content}

    # SentencePiece's order: character map, extra spaces, spaces as '▁', dummy prefix '▁'.
    steps = []
    if normalizer.precompiled_charsmap:
        charsmap = base64.b64encode(normalizer.precompiled_charsmap).decode()
        steps.append({"type": "Precompiled", "precompiled_charsmap": charsmap})
    if normalizer.remove_extra_whitespaces:
        steps += [replace({"Regex": r"\A +| +\z"}, ""), replace({"Regex": " {2,}"}, " ")]
    steps.append(replace({"String": " "}, "▁"))
    if normalizer.add_dummy_prefix:
        steps.append({"type": "Prepend", "prepend": "▁"})
    decoders = [replace({"String": "▁"}, " ")]
    decoders += [{"type": "ByteFallback"}] if trainer.byte_fallback else []
    decoders += [{"type": "Fuse"}]
    if normalizer.add_dummy_prefix:
        decoders.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})

    eos = proto.pieces[_EOS].piece
    sequence = [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}]
    pair = sequence + [{"Sequence": {"id": "B", "type_id": 0}},
                       {"SpecialToken": {"id": eos, "type_id": 0}}]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": proto.pieces[i].piece, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
            for i in (_PAD, _EOS, _UNK)],
        "normalizer": {"type": "Sequence", "normalizers": steps},
        "pre_tokenizer": None,  # one lattice over the whole text, as SentencePiece's
        "post_processor": {
            "type": "TemplateProcessing", "single": sequence, "pair": pair,
            "special_tokens": {eos: {"id": eos, "ids": [_EOS], "tokens": [eos]}}},
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "Unigram", "unk_id": _UNK, "vocab": pieces,
                  "byte_fallback": trainer.byte_fallback},
    }


def sentencepiece_tokenizer(model: bytes, extra_ids: int) -> TokenizerFiles:
    """The files for a SentencePiece model (the .model file's bytes, as trained) with
    `extra_ids` sentinels, as seqio.SentencePieceVocabulary(model, extra_ids) uses it."""
    proto = _parse(model)
    trainer = proto.trainer_spec
    if (trainer.pad_id, trainer.eos_id, trainer.unk_id) != (_PAD, _EOS, _UNK):
        raise FlanJaxError(
            f"the SentencePiece model has pad, EOS and UNK ids {trainer.pad_id}, "
            f"{trainer.eos_id}, {trainer.unk_id}; T5 models use {_PAD}, {_EOS}, {_UNK}, so it "
            "cannot be the vocabulary of this model")
    if (trainer.model_type != trainer.UNIGRAM or not proto.normalizer_spec.escape_whitespaces
            or trainer.treat_whitespace_as_suffix):
        raise FlanJaxError(
            "this SentencePiece model cannot be written as Hugging Face tokenizer files (only "
            "unigram models that mark a space with '▁' before the word can); pass --vocab none "
            "to export the weights alone")
    special = _special_tokens(*(proto.pieces[i].piece for i in (_PAD, _EOS, _UNK)))
    misfits = _t5_tokenizer_misfits(proto)
    files = {SPIECE: model, "special_tokens_map.json": _json(special)}
    if not misfits:
        config = {"tokenizer_class": "T5Tokenizer", "extra_ids": extra_ids, **special,
                  **_CLEANUP}
        files["tokenizer_config.json"] = _json(config)
        return TokenizerFiles(files, f"T5Tokenizer ({SPIECE}, {extra_ids} extra ids)")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "extra_ids": extra_ids, **special,
              **_CLEANUP}
    files["tokenizer_config.json"] = _json(config)
    files["tokenizer.json"] = _json(_tokenizer_json(proto, extra_ids))
    return TokenizerFiles(
        files, f"PreTrainedTokenizerFast (tokenizer.json, {SPIECE}, {extra_ids} extra ids): "
        f"T5Tokenizer would not reproduce this SentencePiece model, as {' and '.join(misfits)}")

