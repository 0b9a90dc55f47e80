"""Parsers of the Flan 2021 (Muffin) generation tasks: structure-to-text, translation,
text formatting and math.

Each function maps one raw TFDS example (bytes already decoded to `str`, arrays to
lists by `flan_jax.data.sources.to_python`) to the fields the templates of
`tasks/flan2021/{struct_to_text,translation,text_formatting,math}.yaml` use.

- GEM (`gem/*:1.1.0`): `target` is the example's reference text (the first of
  `references` where `target` is empty); the structured input is linearized into
  one line of text (`data`, or `concepts` for CommonGen).
- Translation (`wmt14_translate`, `wmt16_translate`, `para_crawl`): the feature is a
  dict keyed by language code; `translate_<src>_<tgt>` reads one direction.
- Text formatting (`para_crawl/enda`, English side): the sentence with its casing,
  punctuation or spaces removed, and the original sentence to restore.
- Math (`math_dataset`): question and answer, with the `b'...\\n'` byte-string
  wrapping some versions of the data files carry removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

from flan_jax.data.sources import Example, raw_field
from flan_jax.errors import DataFormatError

LANGUAGES = {
    "cs": "Czech", "da": "Danish", "de": "German", "en": "English", "es": "Spanish",
    "fi": "Finnish", "fr": "French", "ro": "Romanian", "ru": "Russian", "tr": "Turkish",
}
TRIPLE_SEP = "; "


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip()


def _strings(raw: Example, key: str) -> list[str]:
    value = raw_field(raw, key)
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise DataFormatError(f"field {key!r} should be a list of strings, got {type(value).__name__}")
    return [t for t in (_text(v) for v in value) if t]


def reference(raw: Example) -> str:
    """The GEM target text, falling back to the first reference when `target` is empty."""
    target = _text(raw.get("target", ""))
    if target:
        return target
    refs = _strings(raw, "references") if "references" in raw else []
    return refs[0] if refs else ""


# ---------------------------------------------------------------- structure to text

def split_camel_case(name: str) -> str:
    """'cityServed' -> 'city served'; 'eatType' -> 'eat type'; other text is unchanged."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name.strip())
    return spaced.lower() if spaced != name.strip() else spaced


def _clean_entity(text: str) -> str:
    text = text.strip().replace("_", " ")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return " ".join(text.split())


def web_nlg_triple(triple: str) -> str:
    """'Aarhus_Airport | cityServed | "Aarhus, Denmark"' -> 'Aarhus Airport | city served |
    Aarhus, Denmark'. A string without two '|' separators is only cleaned up."""
    parts = [p.strip() for p in triple.split("|")]
    if len(parts) != 3:
        return _clean_entity(triple)
    subject, relation, obj = parts
    return " | ".join([_clean_entity(subject), split_camel_case(relation.replace("_", " ")),
                       _clean_entity(obj)])


def web_nlg(raw: Example) -> Example:
    """gem/web_nlg_en: `input` is a list of 'subject | predicate | object' strings."""
    triples = [web_nlg_triple(t) for t in _strings(raw, "input")]
    return {"data": TRIPLE_SEP.join(triples), "target": reference(raw)}


def dart(raw: Example) -> Example:
    """gem/dart: TFDS stores each triple of `tripleset` already flattened to one string
    (subject, relation and object joined by single spaces), so triples are only joined."""
    triples = [" ".join(t.replace("_", " ").split()) for t in _strings(raw, "tripleset")]
    return {"data": TRIPLE_SEP.join(triples), "target": reference(raw)}


_MR_SLOT = re.compile(r"\s*([^\[\],]+?)\s*\[([^\]]*)\]\s*,?")


def e2e_attributes(mr: str) -> list[tuple[str, str]] | None:
    """'name[The Eagle], eatType[coffee shop]' -> [('name', 'The Eagle'), ('eat type',
    'coffee shop')]; None when `mr` is not a list of `attribute[value]` slots."""
    pairs, pos = [], 0
    mr = mr.strip()
    while pos < len(mr):
        m = _MR_SLOT.match(mr, pos)
        if m is None:
            return None
        pairs.append((split_camel_case(m.group(1)), m.group(2).strip()))
        pos = m.end()
    return pairs or None


def e2e_nlg(raw: Example) -> Example:
    """gem/e2e_nlg: `meaning_representation` as readable 'attribute: value' pairs (an
    unreadable representation is kept as it is rather than failing the whole task)."""
    mr = _text(raw_field(raw, "meaning_representation"))
    pairs = e2e_attributes(mr)
    data = TRIPLE_SEP.join(f"{k}: {v}" for k, v in pairs) if pairs else " ".join(mr.split())
    return {"data": data, "target": reference(raw)}


def common_gen(raw: Example) -> Example:
    """gem/common_gen: the concept words, comma-separated, and a sentence using them."""
    return {"concepts": ", ".join(_strings(raw, "concepts")), "target": reference(raw)}


def wiki_lingua(raw: Example) -> Example:
    """gem/wiki_lingua_english_en: a how-to article (`source`) and its summary."""
    return {"text": _text(raw_field(raw, "source")), "summary": reference(raw)}


# ---------------------------------------------------------------- translation

def _translator(src: str, tgt: str) -> Callable[[Example], Example]:
    def parse(raw: Example) -> Example:
        return {"source": _text(raw_field(raw, src)), "target": _text(raw_field(raw, tgt)),
                "source_lang": LANGUAGES[src], "target_lang": LANGUAGES[tgt]}

    parse.__name__ = parse.__qualname__ = f"translate_{src}_{tgt}"
    parse.__doc__ = f"{LANGUAGES[src]} source text -> {LANGUAGES[tgt]} target text."
    return parse


translate_en_es = _translator("en", "es")
translate_es_en = _translator("es", "en")
translate_en_fr = _translator("en", "fr")
translate_fr_en = _translator("fr", "en")
translate_en_de = _translator("en", "de")
translate_de_en = _translator("de", "en")
translate_en_tr = _translator("en", "tr")
translate_tr_en = _translator("tr", "en")
translate_en_cs = _translator("en", "cs")
translate_cs_en = _translator("cs", "en")
translate_en_fi = _translator("en", "fi")
translate_fi_en = _translator("fi", "en")
translate_en_ro = _translator("en", "ro")
translate_ro_en = _translator("ro", "en")
translate_en_ru = _translator("en", "ru")
translate_ru_en = _translator("ru", "en")


# ---------------------------------------------------------------- text formatting

def remove_punctuation(text: str) -> str:
    """Drops every Unicode punctuation character (category P*) and collapses spaces."""
    kept = "".join(ch for ch in text if not unicodedata.category(ch).startswith("P"))
    return " ".join(kept.split())


def remove_spaces(text: str) -> str:
    return "".join(text.split())


def _sentence(raw: Example) -> str:
    return " ".join(_text(raw_field(raw, "en")).split())


def truecase(raw: Example) -> Example:
    """para_crawl/enda, English side: the lowercased sentence and the original."""
    sentence = _sentence(raw)
    return {"lowercased": sentence.lower(), "sentence": sentence}


def punctuate(raw: Example) -> Example:
    """para_crawl/enda, English side: the sentence without punctuation and the original."""
    sentence = _sentence(raw)
    return {"unpunctuated": remove_punctuation(sentence), "sentence": sentence}


def segment(raw: Example) -> Example:
    """para_crawl/enda, English side: the sentence with all spaces removed and the original."""
    sentence = _sentence(raw)
    return {"unsegmented": remove_spaces(sentence), "sentence": sentence}


# ---------------------------------------------------------------- math

_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.DOTALL)


def clean_math_text(value: Any) -> str:
    """"b'Solve 2*x = 4 for x.\\n'" -> 'Solve 2*x = 4 for x.'; clean text is unchanged."""
    text = _text(value)
    m = _BYTES_REPR.match(text)
    if m:
        text = m.group(2)
        while text.endswith("\\n"):
            text = text[:-2]
        text = text.replace("\\'", "'").strip()
    return text


def math_qa(raw: Example) -> Example:
    """math_dataset/*: `question` and `answer` as clean text."""
    return {"question": clean_math_text(raw_field(raw, "question")),
            "answer": clean_math_text(raw_field(raw, "answer"))}
