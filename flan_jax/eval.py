"""The Flan paper's held-out evaluation (MMLU, BBH, TyDiQA GoldP, MGSM) on any checkpoint.

    python -m flan_jax.eval --gin_file=gin/runs/eval_paper.gin \\
        --gin.CHECKPOINT_PATH=~/flan-t5-small --data_dir ~/eval_data
    FLAN_JAX_VOCAB=byte python -m flan_jax.eval --checkpoint random:tiny \\
        --data_dir tests/fixtures/eval --benchmarks bbh,mgsm --tasks 'boolean*,de' --max_examples 2

The vocabulary is the checkpoint's own: the one a flan_jax.train run recorded, or the
spiece.model of a Hugging Face download such as ~/flan-t5-small; else $FLAN_JAX_VOCAB (a local SentencePiece file, or 'byte'), else the T5
model at gs://t5-data, which needs a network connection.

Gin (`--gin_file`, `--gin.NAME=VALUE`) sets `flan_jax.eval.EvalConfig`; the plain flags
below override it. DATA_DIR holds mmlu/, bbh/, mgsm/ (and optionally tensorflow_datasets/)
in the official layouts, printed by `--layouts`. Writes OUTPUT_DIR/results.md,
results.csv, results_tasks.csv, results.png and predictions.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import gin

from flan_jax import console
from flan_jax.errors import FlanJaxError
from flan_jax.evaluation import benchmarks as bm
from flan_jax.evaluation.runner import MODES, EvalConfig, run
from flan_jax.kernels.host_memory import keep_freed_memory
from flan_jax.training import compilation_cache

REPO_ROOT = Path(__file__).resolve().parent.parent
_GIN_LITERAL = re.compile(r"""^(['"@%\[\(\{]|-?\d|True$|False$|None$)""")


def gin_value(value: str) -> str:
    """A flag value as gin text: literals, references and macros as they are, other
    text (a path) quoted."""
    return value if _GIN_LITERAL.match(value) else repr(value)


def _split(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flan_jax.eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gin_file", action="append", default=[], help="gin file(s) to parse")
    p.add_argument("--checkpoint", help="checkpoint directory (any layout) or random:SIZE")
    p.add_argument("--benchmarks", help=f"comma list of {','.join(bm.BENCHMARKS)}")
    p.add_argument("--tasks", help="comma list of task patterns: subject, BBH file, language "
                                   "or full name (mmlu_anatomy, bbh_navigate, mgsm_de, ...)")
    p.add_argument("--modes", help=f"comma list of {','.join(MODES)}")
    p.add_argument("--max_examples", type=int, help="at most this many examples per task")
    p.add_argument("--data_dir", help="directory holding mmlu/, bbh/, mgsm/")
    p.add_argument("--tfds_data_dir", help="TFDS data directory for tydi_qa")
    p.add_argument("--output_dir")
    p.add_argument("--batch_size", type=int)
    p.add_argument("--self_consistency_samples", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--direct_decode_length", type=int)
    p.add_argument("--cot_decode_length", type=int)
    p.add_argument("--skip_missing", action="store_true",
                   help="skip tasks whose data is absent (listed in the report) instead of failing")
    p.add_argument("--no_progress", action="store_true")
    p.add_argument("--layouts", action="store_true", help="print the expected data layouts")
    p.add_argument(console.VERBOSE_FLAG, action="store_true", help=console.VERBOSE_HELP)
    return p


def config_from_args(argv: list[str]) -> EvalConfig:
    bindings = [f"{a[6:].partition('=')[0]} = {gin_value(a[6:].partition('=')[2])}"
                for a in argv if a.startswith("--gin.")]
    args = build_parser().parse_args([a for a in argv if not a.startswith("--gin.")])
    if args.layouts:
        print("\n\n".join(bm.LAYOUTS.values()))
        raise SystemExit(0)
    gin.add_config_file_search_path(str(REPO_ROOT))
    gin.parse_config_files_and_bindings(args.gin_file, bindings, finalize_config=False)
    cfg = EvalConfig()
    overrides = {
        "checkpoint_path": args.checkpoint, "benchmarks": _split(args.benchmarks),
        "tasks": _split(args.tasks), "modes": _split(args.modes),
        "max_examples": args.max_examples, "data_dir": args.data_dir,
        "tfds_data_dir": args.tfds_data_dir, "output_dir": args.output_dir,
        "batch_size": args.batch_size, "temperature": args.temperature,
        "self_consistency_samples": args.self_consistency_samples,
        "direct_decode_length": args.direct_decode_length,
        "cot_decode_length": args.cot_decode_length,
    }
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if args.no_progress:
        cfg = dataclasses.replace(cfg, progress=False)
    if args.skip_missing:
        cfg = dataclasses.replace(cfg, skip_missing=True)
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    keep_freed_memory()
    console.start(console.VERBOSE_FLAG in argv)
    compilation_cache.enable()
    try:
        cfg = config_from_args(argv)
        out = run(cfg)
    except FlanJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for component, score in sorted(out["components"].items()):
        print(f"{component:28s} {'-' if score is None else f'{score:.1f}'}")
    for note in out["notes"]:
        print(f"note: {note}")
    print(f"reports: {', '.join(str(p) for p in out['paths'].values())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
