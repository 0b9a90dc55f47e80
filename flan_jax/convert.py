"""Convert a T5 v1.1 / Flan-T5 checkpoint between layouts: `python -m flan_jax.convert`.

python -m flan_jax.convert --to t5x flan-t5-small/ t5x_model_dir/
python -m flan_jax.convert --from t5x --to hf --dtype bfloat16 t5x_model_dir/ hf_dir/
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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

_EPILOG = """\
layouts:
  hf        a Hugging Face directory: config.json + model.safetensors (also sharded
            safetensors, or pytorch_model.bin read with torch.load(weights_only=True));
            written as config.json + model.safetensors for
            transformers.T5ForConditionalGeneration.from_pretrained
  t5x       a t5x checkpoint_<step> directory in either of t5x's layouts: orbax
            (state/ with 'target' and the optimizer state, what t5x writes today) or
            legacy msgpack ('checkpoint' + zarr arrays); or a t5x model directory (the
            latest checkpoint_<step> is read; checkpoint_0 is written unless DST itself is
            named checkpoint_<step>, in the layout --t5x_layout names); optimizer state is
            neither read nor written
  flan_jax  DIR/params (orbax) + DIR/config.json, as written by flan_jax.interop.checkpoints.save_params

DST must not already hold a checkpoint. Every mismatch between the weights and the
model config is listed by parameter name, and nothing is written.
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
    parser.add_argument("src", metavar="SRC", help="checkpoint to read")
    parser.add_argument(
        "dst", metavar="DST", help="directory to write (must not hold a checkpoint yet)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the conversion; returns the exit status (1 with a message on any problem)."""
    args = build_parser().parse_args(argv)
    try:
        check_destination(args.dst, args.target_format)
        source_format = args.source_format or detect_format(args.src)
        params, config = load_any(args.src, fmt=source_format, dtype=args.dtype, show_progress=True)
        written = save_any(args.dst, params, config, args.target_format,
                           t5x_layout=args.t5x_layout, show_progress=True)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
