"""The demo's vocabulary: a small SentencePiece model trained on the demo's own text.

Byte tokens make a demo prompt about three times longer than word pieces, and a CPU
spends its minutes per token: on word pieces the demo model sees three times as many
examples in the same time. So `demo_vocabulary()` trains a unigram SentencePiece model
(1,024 pieces; numbers as one piece per digit, the first one with the space before it,
so that numbers keep their digits; byte fallback, so nothing is unknown) on rendered
zero-shot training examples of the demo
families, once, single-threaded (hence deterministic), and caches it in the flan_jax
cache directory ($FLAN_JAX_CACHE_DIR, default ~/.cache/flan_jax) under a name derived
from its training text and settings. Only train splits are read.

    python -m flan_jax.data.demo.vocab      # prints the path (training the model if needed)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import gin

from flan_jax.data.mixing import CACHE_ENV

_STYLES = ("zs_opt", "zs_noopt", "zs_cot")


def training_text(collection: str = "demo", examples_per_task: int = 300) -> list[str]:
    """Inputs and targets of the first training examples of every zero-shot task of the
    collection, rendered with the templates trained on."""
    from flan_jax.data.datasource import FlanDataSource, TaskData
    from flan_jax.data.registry import load_catalog

    class _Bytes:  # the renderer measures few-shot prompts only; zero-shot needs nothing
        def encode(self, text: str) -> list[int]:
            return list(text.encode("utf-8"))

    texts = []
    for spec in load_catalog().tasks.values():
        if spec.collection != collection:
            continue
        data = TaskData(spec)
        for style in (s for s in _STYLES if s in spec.styles):
            source = FlanDataSource(data, style, _Bytes())
            for ex in itertools.islice(source.rendered("train"), examples_per_task):
                texts += [ex["inputs"], ex["targets"]]
    return texts


@gin.configurable(module="flan_jax.data.demo.vocab")
def demo_vocabulary(size: int = 1024, examples_per_task: int = 300) -> str:
    """The path of the demo SentencePiece model (trained and cached on first use)."""
    import sentencepiece

    texts = training_text(examples_per_task=examples_per_task)
    settings = dict(
        vocab_size=size, model_type="unigram", split_digits=True, byte_fallback=True,
        user_defined_symbols=[f"\u2581{d}" for d in range(10)],  # "▁7": space + digit
        character_coverage=1.0, remove_extra_whitespaces=False,
        max_sentence_length=1 << 16, num_threads=1, pad_id=0, eos_id=1, unk_id=2, bos_id=-1)
    rule = "A0\t20\n"  # the normalization map (see below)
    key = json.dumps(settings, sort_keys=True) + rule + "\x1e".join(texts)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    root = Path(os.environ.get(CACHE_ENV, "~/.cache/flan_jax")).expanduser()
    path = root / f"demo_spm_{size}_{digest}.model"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f"demo_spm_{size}_{digest}.{os.getpid()}"
        # Text as it is (newlines kept), but not the 'identity' rule: a model without a
        # normalization map logs a line every time it is loaded. One map: NBSP -> space.
        Path(f"{tmp}.tsv").write_text(rule)
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=str(tmp), minloglevel=2,
            normalization_rule_tsv=f"{tmp}.tsv", **settings)
        Path(f"{tmp}.model").replace(path)
        for suffix in (".vocab", ".tsv"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    return str(path)


if __name__ == "__main__":
    print(demo_vocabulary())
