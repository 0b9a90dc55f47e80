"""Convert a T5 v1.1 / Flan-T5 checkpoint between layouts: `python -m flan_jax.convert`.

python -m flan_jax.convert --to t5x flan-t5-small/ t5x_model_dir/
python -m flan_jax.convert --to hf runs/demo/ hf_dir/
python -m flan_jax.convert --from t5x --to hf --vocab spiece.model t5x_model_dir/ hf_dir/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from flan_jax.errors import FlanJaxError
from flan_jax.interop.checkpoints import (
    FORMATS,
    RESTORE_HINT,
    check_destination,
    detect_format,
    load_any,
    save_any,
)
from flan_jax.interop.common import flatten
from flan_jax.interop.hf_tokenizer import TokenizerFiles, byte_tokenizer, sentencepiece_tokenizer

_EPILOG = """\
layouts:
  hf        a Hugging Face directory: config.json + model.safetensors (also sharded
            safetensors, or pytorch_model.bin read with torch.load(weights_only=True));
            written as config.json + model.safetensors + the tokenizer files of the
            model's vocabulary, for transformers' AutoTokenizer and
            AutoModelForSeq2SeqLM.from_pretrained: T5Tokenizer (spiece.model) for a
            SentencePiece model normalised as T5's is, a tokenizer.json that follows the
            settings of any other (the demo's), ByT5Tokenizer for the byte vocabulary
  t5x       a t5x checkpoint_<step> directory in either of t5x's layouts: orbax
            (state/ with 'target' and the optimizer state, what t5x writes today) or
            legacy msgpack ('checkpoint' + zarr arrays); or a t5x model directory (the
            latest checkpoint_<step> is read; checkpoint_0 is written unless DST itself is
            named checkpoint_<step>, in the layout --t5x_layout names); optimizer state is
            neither read nor written
  flan_jax  DIR/params (orbax) + DIR/config.json, as written by flan_jax.interop.checkpoints.save_params

The vocabulary of an hf export is the one SRC names: a flan_jax.train run's
vocabulary.json (MODEL_DIR or one of its steps), a Hugging Face directory's spiece.model
or ByT5 tokenizer config; otherwise (a t5x checkpoint) name it with --vocab.

DST must not already hold a checkpoint (for hf: must be new or empty). Every mismatch
between the weights and the model config is listed by parameter name, and nothing is
written.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: --from, --to, --dtype, SRC, DST."""
    parser = argparse.ArgumentParser(
        prog="python -m flan_jax.convert",
        description="Convert a T5 v1.1 / Flan-T5 checkpoint between the Hugging Face, t5x "
        "and flan_jax layouts, checking every parameter against the model config.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="source_format", choices=FORMATS, help="layout of SRC (default: detected)"
    )
    parser.add_argument(
        "--to", dest="target_format", choices=FORMATS, required=True, help="layout to write"
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        help="cast every parameter (default: keep the stored dtype)",
    )
    parser.add_argument(
        "--t5x_layout",
        choices=("msgpack", "orbax"),
        default="msgpack",
        help="layout of a t5x checkpoint written with --to t5x (default: msgpack, which "
        "every t5x version restores; orbax is what t5x writes today)",
    )
    parser.add_argument(
        "--vocab",
        help="with --to hf: the vocabulary the model was trained with, for the tokenizer files: "
        "'byte', a SentencePiece .model file, or 'none' for no tokenizer files (default: the "
        "one SRC names)",
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint to read")
    parser.add_argument(
        "dst", metavar="DST", help="directory to write (must not hold a checkpoint yet)"
    )
    return parser


def _vocabulary(spec: str | None, src: str) -> tuple[Any, str] | None:
    """The vocabulary for an hf export's tokenizer files, loaded, and where it came from;
    None for `--vocab none`."""
    from flan_jax.data import vocab  # seqio and TensorFlow: only for an hf export

    if spec == "none":
        return None
    if spec:
        try:
            return vocab.readable(vocab.resolve(spec)), f"--vocab {spec}"
        except FileNotFoundError:
            raise FlanJaxError(f"--vocab {spec}: no such file; pass 'byte', a SentencePiece "
                               ".model file, or 'none'") from None
    found = vocab.of_checkpoint(src)
    if found is None:
        raise FlanJaxError(
            f"cannot tell which vocabulary {src} was trained with (it has no vocabulary.json "
            "of a flan_jax.train run, spiece.model or ByT5 tokenizer config), so the tokenizer "
            "files cannot be written. Name it: --vocab byte, --vocab PATH/spiece.model (a demo "
            "run: --vocab $(python -m flan_jax.data.demo.vocab)), or --vocab none for the "
            "weights alone.")
    return vocab.readable(found[0]), str(found[1])


def _tokenizer_files(vocabulary: Any, model_vocab_size: int) -> TokenizerFiles:
    """The Hugging Face tokenizer files of a seqio vocabulary, for a model with
    `model_vocab_size` ids."""
    import seqio

    from flan_jax.data import vocab

    if isinstance(vocabulary, seqio.ByteVocabulary) and not vocabulary.extra_ids:
        return byte_tokenizer(model_vocab_size)
    if isinstance(vocabulary, seqio.SentencePieceVocabulary):
        return sentencepiece_tokenizer(vocab.model_bytes(vocabulary), vocabulary.extra_ids)
    raise FlanJaxError(f"no Hugging Face tokenizer is written for {vocabulary}; pass "
                       "--vocab none to export the weights alone")


def _check_fits(vocabulary: tuple[Any, str], model_vocab_size: int) -> None:
    """FlanJaxError if the vocabulary has ids the model has no embedding for."""
    from flan_jax.training.config_checks import vocabulary_problem

    problem = vocabulary_problem(vocabulary[0], model_vocab_size,
                                 f"the vocabulary ({vocabulary[1]})")
    if problem:
        raise FlanJaxError(f"{problem}, so it cannot be this model's vocabulary; name the "
                           "right one with --vocab (or --vocab none).")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the conversion; returns the exit status (1 with a message on any problem)."""
    args = build_parser().parse_args(argv)
    vocabulary = tokenizer = None
    try:
        if args.vocab and args.target_format != "hf":
            raise FlanJaxError("--vocab names the tokenizer of a Hugging Face export; it is "
                               "used only with --to hf")
        check_destination(args.dst, args.target_format)
        source_format = args.source_format or detect_format(args.src)
        if args.target_format == "hf":  # before the weights are read: fail early
            vocabulary = _vocabulary(args.vocab, args.src)
        params, config = load_any(args.src, fmt=source_format, dtype=args.dtype, show_progress=True)
        if vocabulary:
            _check_fits(vocabulary, config.vocab_size)
            tokenizer = _tokenizer_files(vocabulary[0], config.vocab_size)
        written = save_any(args.dst, params, config, args.target_format,
                           t5x_layout=args.t5x_layout, tokenizer=tokenizer, show_progress=True)
    except FlanJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    flat = flatten(params)
    count = sum(int(np.prod(a.shape)) for a in flat.values())
    dtypes = ", ".join(sorted({str(a.dtype) for a in flat.values()}))
    layout = f", {args.t5x_layout}" if args.target_format == "t5x" else ""
    print(
        f"{args.src} ({source_format}) -> {written} ({args.target_format}{layout}): "
        f"{len(flat)} arrays, {count:,} parameters, {dtypes}"
    )
    if args.target_format == "t5x":
        print(RESTORE_HINT)
    if args.target_format == "hf":
        print(f"tokenizer: {tokenizer.summary}; vocabulary from {vocabulary[1]}" if tokenizer
              else "tokenizer: none written (--vocab none)")
        print(f"load with transformers: AutoTokenizer.from_pretrained('{written}'), "
              f"AutoModelForSeq2SeqLM.from_pretrained('{written}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
