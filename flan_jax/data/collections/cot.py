"""Parser of the chain-of-thought (CoT) collection of Flan 2022.

Each dataset (gsm8k, strategyqa, creak, qasc, esnli, ecqa, sensemaking, aqua,
qed) is a headerless TSV file with the columns `question`, `answer` and
`rationale`. A line break inside a field is stored as the two characters
backslash and "n"; `parse` turns those back into real line breaks.
"""

from __future__ import annotations

from flan_jax.data.sources import Example
from flan_jax.errors import DataFormatError, EmptyFieldError

FIELDS = ("question", "answer", "rationale")
ESCAPED_NEWLINE = "\\n"


def unescape(text: str) -> str:
    """Restores line breaks written as a literal backslash-n and strips each field."""
    return text.replace(ESCAPED_NEWLINE, "\n").strip()


def parse(raw: Example) -> Example:
    """question/answer/rationale with real line breaks; a row with an empty field is
    filtered out (EmptyFieldError)."""
    out = {}
    for field in FIELDS:
        value = raw.get(field)
        if value is None:
            raise DataFormatError(f"CoT example has no {field!r} column "
                                  f"(it has: {', '.join(sorted(raw))})")
        out[field] = unescape(str(value))
        if not out[field]:
            context = out.get("question") or unescape(str(raw.get("question", "")))
            hint = f" (question: {context[:80]!r})" if context else ""
            raise EmptyFieldError(f"CoT example has an empty {field!r} field{hint}")
    return out
