"""`python -m flan_jax.infer`: answer prompts, or write predictions for a task split to JSONL.

Free-text prompts (the way people first try a Flan-T5 model)::

    python -m flan_jax.infer --checkpoint ~/flan-t5-small --prompt "Translate to German: Hi"
    printf 'Q1\\nQ2\\n' | python -m flan_jax.infer --checkpoint ckpt --vocab byte

Predictions for a seqio task or mixture split (one JSON line per example: inputs, targets,
prediction, score and the example's metadata fields such as `_task_name`, `_template_type`)::

    python -m flan_jax.infer --checkpoint ckpt --task demo_submix --split test \\
        --output preds.jsonl --max_examples 100

Decoding: greedy by default; `--beam N` (t5x length penalty `--alpha`); `--temperature T`
(> 0) samples, optionally with `--top_k` / `--top_p`. The checkpoint is anything
`flan_jax.interop.checkpoints.load_any` reads (Hugging Face, t5x, flan_jax). The vocabulary is
`--vocab` (a SentencePiece `.model` file or `byte`), else the one a flan_jax.train run
recorded (vocabulary.json) or a Hugging Face checkpoint holds (spiece.model), else
$FLAN_JAX_VOCAB / the T5 default; for a task, the task's own.
Before the outputs, one line on stderr names the checkpoint directory read and its step.

Every setting is also a gin binding of `flan_jax.infer.settings` (see gin/runs/infer.gin):
`--gin_file` and `--gin.NAME=VALUE` work as in t5x, and command-line flags win over gin.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gin
import jax
import numpy as np

from flan_jax import console
from flan_jax.errors import FlanJaxError
from flan_jax.kernels.host_memory import keep_freed_memory
from flan_jax.models import decoding
from flan_jax.models.config import T5Config
from flan_jax.training import compilation_cache

_MIN_INPUT_BUCKET = 16


class InferError(FlanJaxError):
    """A user-facing problem with the inference settings (no traceback needed)."""


@gin.configurable(module="flan_jax.infer")
def settings(checkpoint_path: str | None = None, vocabulary: str | None = None,
             mixture_or_task_name: str | None = None,
             mixture_or_task_module: str | None = "flan_jax.catalog",
             split: str = "validation", output_path: str | None = None,
             task_feature_lengths: dict[str, int] | None = None, batch_size: int = 8,
             max_examples: int | None = None, num_beams: int = 1, alpha: float = 0.6,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             dtype: str | None = None, prompts: Sequence[str] = ()) -> dict[str, Any]:
    """All inference settings (gin-configurable); returns them as a dict.

    `task_feature_lengths` = {'inputs': max input tokens, 'targets': max decoded tokens}.
    `max_examples` caps the examples read from each task. `temperature` 0 is greedy.
    """
    lengths = {"inputs": 512, "targets": 64, **(task_feature_lengths or {})}
    return dict(checkpoint_path=checkpoint_path, vocabulary=vocabulary,
                mixture_or_task_name=mixture_or_task_name,
                mixture_or_task_module=mixture_or_task_module, split=split,
                output_path=output_path, task_feature_lengths=lengths, batch_size=batch_size,
                max_examples=max_examples, num_beams=num_beams, alpha=alpha,
                temperature=temperature, top_k=top_k, top_p=top_p, seed=seed, dtype=dtype,
                prompts=list(prompts))


# ----------------------------------------------------------------------------- decoding


class Predictor:
    """Decodes batches of token ids with one model and one decoding setting.

    Batches are padded to `batch_size` rows and input lengths to a power of two (at least
    16), so a whole split compiles a handful of times at most.
    """

    def __init__(self, params: Any, config: T5Config, *, max_decode_length: int,
                 batch_size: int = 8, num_beams: int = 1, alpha: float = 0.6,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0):
        if num_beams < 1:
            raise InferError(f"--beam must be >= 1, got {num_beams}")
        if temperature < 0:
            raise InferError(f"--temperature must be >= 0 (0 = greedy), got {temperature}")
        if num_beams > 1 and temperature > 0:
            raise InferError("choose beam search (--beam) or sampling (--temperature), not both")
        if (top_k or top_p < 1.0) and temperature == 0:
            raise InferError("--top_k/--top_p apply to sampling: also set --temperature > 0")
        if not 0 <= top_k <= config.vocab_size or not 0.0 < top_p <= 1.0:
            raise InferError(f"--top_k must be in [0, {config.vocab_size}] and --top_p in "
                             f"(0, 1], got {top_k} and {top_p}")
        if 2 * num_beams > config.vocab_size:
            raise InferError(f"--beam {num_beams} is too many for a {config.vocab_size}-token "
                             "vocabulary")
        if max_decode_length < 1 or batch_size < 1:
            raise InferError("max_decode_length and batch_size must be positive, got "
                             f"{max_decode_length} and {batch_size}")
        self.params, self.config = params, config
        self.max_decode_length, self.batch_size = max_decode_length, batch_size
        self.num_beams, self.alpha = num_beams, alpha
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.rng = jax.random.key(seed)
        self._calls = 0

    @property
    def method(self) -> str:
        if self.num_beams > 1:
            return f"beam search ({self.num_beams} beams, alpha {self.alpha})"
        if self.temperature > 0:
            return (f"sampling (temperature {self.temperature}, top_k {self.top_k}, "
                    f"top_p {self.top_p})")
        return "greedy"

    def __call__(self, rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[float]]:
        """Token ids of each row's output (up to, without, EOS) and its score."""
        tokens, scores = [], []
        for start in range(0, len(rows), self.batch_size):
            t, s = self._batch(rows[start:start + self.batch_size])
            tokens += t
            scores += s
        return tokens, scores

    def _batch(self, rows: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[float]]:
        longest = max(max(len(r) for r in rows), 1)
        width = max(_MIN_INPUT_BUCKET, 1 << math.ceil(math.log2(longest)))
        batch = np.zeros((self.batch_size, width), np.int32)
        for i in range(self.batch_size):
            row = rows[i] if i < len(rows) else rows[0]  # filler rows repeat the first
            batch[i, :len(row)] = row
        kwargs = dict(config=self.config, max_decode_length=self.max_decode_length)
        if self.num_beams > 1:
            result = decoding.beam_search(self.params, batch, num_beams=self.num_beams,
                                          alpha=self.alpha, **kwargs)
            out, score = result.tokens[:, 0], result.scores[:, 0]
        elif self.temperature > 0:
            rng = jax.random.fold_in(self.rng, self._calls)
            result = decoding.sample_decode(self.params, batch, rng,
                                            temperature=self.temperature, top_k=self.top_k,
                                            top_p=self.top_p, **kwargs)
            out, score = result.tokens, result.scores
        else:
            result = decoding.greedy_decode(self.params, batch, **kwargs)
            out, score = result.tokens, result.scores
        self._calls += 1
        out, score = np.asarray(out)[:len(rows)], np.asarray(score)[:len(rows)]
        return [strip_eos(r) for r in out], [float(s) for s in score]


def strip_eos(tokens: Iterable[int]) -> list[int]:
    """The tokens before the first EOS (a model may generate id 0 itself, so not at 0)."""
    kept = []
    for t in tokens:
        if int(t) == decoding.EOS_ID:
            break
        kept.append(int(t))
    return kept


def encode_prompt(vocab: Any, text: str, max_length: int) -> list[int]:
    """`text` tokenized, truncated to `max_length` - 1 tokens, then EOS."""
    ids = [int(i) for i in vocab.encode(text)][:max(max_length - 1, 0)]
    return ids + [decoding.EOS_ID]


# ----------------------------------------------------------------------------- loading


_LAYOUT_NAMES = {"hf": "Hugging Face", "t5x": "t5x", "flan_jax": "flan_jax"}


def load_model(path: str | None, dtype: str | None = None) -> tuple[Any, T5Config, str]:
    """(params, config, a line saying which checkpoint and step were read) from any
    checkpoint layout; InferError if it is missing."""
    from flan_jax.interop import checkpoints

    if not path:
        raise InferError("no checkpoint: pass --checkpoint PATH (a Hugging Face, t5x or "
                         "flan_jax checkpoint) or --gin.CHECKPOINT_PATH=\"'PATH'\"")
    if not Path(path).expanduser().exists():
        raise InferError(f"checkpoint {path!r} does not exist")
    fmt, directory, step = checkpoints.locate(Path(path).expanduser())
    params, config = checkpoints.load_any(directory, fmt=fmt, dtype=dtype)
    line = (f"loaded {directory} ({_LAYOUT_NAMES[fmt]} checkpoint, "
            f"{'no step recorded' if step is None else f'step {step}'})")
    return jax.device_put(params), config, line


def load_vocabulary(spec: str | None, checkpoint_path: str | None) -> Any:
    """--vocab, else the checkpoint's own (`vocab.of_checkpoint`), else flan_jax's default."""
    from flan_jax.data import vocab as vocab_lib

    try:
        return vocab_lib.for_checkpoint(checkpoint_path, spec)
    except FileNotFoundError as e:
        raise InferError(f"vocabulary {spec!r} not found (pass a SentencePiece .model "
                         "file or 'byte')") from e


def check_vocab_size(vocab: Any, config: T5Config, what: str = "the vocabulary") -> None:
    """InferError if the vocabulary has ids the model has no logits for."""
    from flan_jax.training.config_checks import vocabulary_problem

    problem = vocabulary_problem(vocab, config.vocab_size, what)
    if problem:
        raise InferError(f"{problem}. Pass the vocabulary the checkpoint was trained with "
                         "(--vocab); a model whose vocab_size is smaller than the vocabulary it "
                         "was trained on cannot be used with it (flan_jax.train refuses to "
                         "train one).")


def get_task(name: str, module: str | None) -> Any:
    """The seqio Task or Mixture `name` (after importing `module`); a FlanJaxError naming
    the closest registered names if unknown."""
    from flan_jax.data.registry import get_mixture_or_task

    for mod in [m for m in (module, "flan_jax.catalog") if m]:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise InferError(f"cannot import task module {mod!r}: {e}") from e
    return get_mixture_or_task(name)


# ----------------------------------------------------------------------------- task mode


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()] if value.ndim else _jsonable(value.item())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def iter_examples(task_or_mixture: Any, split: str, lengths: dict[str, int],
                  max_examples: int | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task name, example) for each task of a mixture in turn (or the one task), in order.

    At most `max_examples` per task; tasks without `split` are skipped with a message.
    """
    import seqio

    from flan_jax.data.datasource import as_numpy

    tasks = getattr(task_or_mixture, "tasks", None) if isinstance(
        task_or_mixture, seqio.Mixture) else None
    tasks = tasks or [task_or_mixture]
    usable = [t for t in tasks if split in t.splits]
    if not usable:
        raise InferError(f"{task_or_mixture.name!r} has no split {split!r}; its splits: "
                         f"{', '.join(sorted(task_or_mixture.splits))}")
    for task in tasks:
        if task not in usable:
            print(f"skipping {task.name}: no split {split!r}", file=sys.stderr)
            continue
        ds = task.get_dataset(lengths, split=split, shuffle=False, num_epochs=1)
        if max_examples is not None:
            ds = ds.take(max_examples)
        for example in as_numpy(ds):
            yield task.name, example


def _record(example: dict[str, Any], task: Any, prediction: list[int], score: float,
            vocab: Any) -> dict[str, Any]:
    target_vocab = task.output_features["targets"].vocabulary
    record: dict[str, Any] = {
        "inputs": _jsonable(example.get("inputs_pretokenized",
                                        vocab.decode(strip_eos(example["inputs"])))),
        "targets": _jsonable(example.get("targets_pretokenized",
                                         target_vocab.decode(strip_eos(example["targets"])))),
        "prediction": target_vocab.decode(prediction),
        "score": score,
    }
    for key, value in example.items():
        if key not in ("inputs", "targets") and not key.endswith("_pretokenized"):
            record[key] = _jsonable(value)
    return record


def predict_task(predictor: Predictor, name: str, split: str, output: str | None, *,
                 lengths: dict[str, int], max_examples: int | None = None,
                 module: str | None = None) -> int:
    """Writes one JSON line per example of `name`/`split` to `output` (stdout if None).

    Returns the number of examples written.
    """
    import seqio
    from tqdm import tqdm

    target = get_task(name, module)
    tasks = target.tasks if isinstance(target, seqio.Mixture) else [target]
    for task in tasks:
        check_vocab_size(task.output_features["inputs"].vocabulary, predictor.config,
                         f"task {task.name}'s vocabulary")
    by_name = {t.name: t for t in tasks}
    out = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    written = 0
    try:
        with tqdm(desc=f"{name}/{split}", unit="ex", file=sys.stderr,
                  disable=None) as bar:
            pending: list[tuple[str, dict[str, Any]]] = []

            def flush() -> None:
                nonlocal written
                preds, scores = predictor([ex["inputs"].tolist() for _, ex in pending])
                for (task_name, ex), pred, score in zip(pending, preds, scores, strict=True):
                    task = by_name[task_name]
                    vocab = task.output_features["inputs"].vocabulary
                    out.write(json.dumps(_record(ex, task, pred, score, vocab),
                                         ensure_ascii=False) + "\n")
                written += len(pending)
                bar.update(len(pending))
                pending.clear()

            for item in iter_examples(target, split, lengths, max_examples):
                pending.append(item)
                if len(pending) == predictor.batch_size:
                    flush()
            if pending:
                flush()
    finally:
        if output:
            out.close()
    return written


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m flan_jax.infer", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Unlisted --gin.NAME=VALUE arguments are gin bindings (t5x style).")
    p.add_argument("--checkpoint", help="Hugging Face, t5x or flan_jax checkpoint directory")
    p.add_argument("--vocab", help="SentencePiece .model file, or 'byte'")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable); without --prompt "
                   "and --task, prompts are read from stdin, one per line")
    p.add_argument("--task", help="seqio task or mixture whose split to predict")
    p.add_argument("--module", help="module to import that registers the task "
                   "(default: flan_jax.catalog)")
    p.add_argument("--split", help="split of --task (default: validation)")
    p.add_argument("--output", help="JSONL file to write (default: stdout)")
    p.add_argument("--max_examples", type=int, help="at most this many examples per task")
    p.add_argument("--batch_size", type=int)
    p.add_argument("--max_input_length", type=int, help="input tokens kept (default 512)")
    p.add_argument("--max_decode_length", type=int, help="tokens generated (default 64)")
    p.add_argument("--beam", type=int, help="beam search with N beams")
    p.add_argument("--alpha", type=float, help="beam-search length penalty (default 0.6)")
    p.add_argument("--temperature", type=float, help="> 0: sample at this temperature")
    p.add_argument("--top_k", type=int)
    p.add_argument("--top_p", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="cast the parameters")
    p.add_argument("--json", action="store_true",
                   help="prompt mode: print JSON lines (prompt, prediction, score)")
    p.add_argument("--gin_file", action="append", default=[], help="gin file (repeatable)")
    p.add_argument("--gin_search_paths", default="", help="comma-separated gin include paths")
    p.add_argument(console.VERBOSE_FLAG, action="store_true", help=console.VERBOSE_HELP)
    return p


_FLAG_TO_SETTING = {
    "checkpoint": "checkpoint_path", "vocab": "vocabulary", "task": "mixture_or_task_name",
    "module": "mixture_or_task_module", "split": "split", "output": "output_path",
    "max_examples": "max_examples", "batch_size": "batch_size", "beam": "num_beams",
    "alpha": "alpha", "temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
    "seed": "seed", "dtype": "dtype", "prompt": "prompts",
}


def parse_settings(argv: Sequence[str] | None = None) -> tuple[dict[str, Any], argparse.Namespace]:
    """Settings from gin files, --gin.NAME=VALUE bindings and flags (flags win)."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    bindings = []
    for arg in rest:
        if arg.startswith("--gin.") and "=" in arg:
            bindings.append(arg[len("--gin."):])
        else:
            parser.error(f"unrecognized argument {arg!r} (gin bindings are --gin.NAME=VALUE)")
    for flag, name in _FLAG_TO_SETTING.items():
        value = getattr(args, flag)
        if value is not None:
            bindings.append(f"flan_jax.infer.settings.{name} = {value!r}")
    lengths = {k: v for k, v in (("inputs", args.max_input_length),
                                 ("targets", args.max_decode_length)) if v is not None}
    for path in filter(None, args.gin_search_paths.split(",")):
        gin.add_config_file_search_path(path)
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(args.gin_file, bindings, finalize_config=False)
        values = settings()
    except (ValueError, KeyError, OSError, RuntimeError) as e:
        raise InferError(f"gin configuration: {e}") from e
    values["task_feature_lengths"].update(lengths)
    return values, args


def _read_prompts(values: dict[str, Any]) -> list[str]:
    if values["prompts"]:
        return list(values["prompts"])
    if sys.stdin.isatty():
        print("Type prompts, one per line; end with Ctrl-D.", file=sys.stderr)
    return [line.rstrip("\n") for line in sys.stdin if line.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI; returns the exit status."""
    keep_freed_memory()
    console.start(console.VERBOSE_FLAG in (sys.argv[1:] if argv is None else argv))
    compilation_cache.enable()
    try:
        values, args = parse_settings(argv)
        params, config, loaded = load_model(values["checkpoint_path"], values["dtype"])
        print(f"flan_jax.infer: {loaded}", file=sys.stderr)
        lengths = values["task_feature_lengths"]
        predictor = Predictor(params, config, max_decode_length=lengths["targets"],
                              batch_size=values["batch_size"], num_beams=values["num_beams"],
                              alpha=values["alpha"], temperature=values["temperature"],
                              top_k=values["top_k"], top_p=values["top_p"],
                              seed=values["seed"])
        if values["mixture_or_task_name"]:
            n = predict_task(predictor, values["mixture_or_task_name"], values["split"],
                             values["output_path"], lengths=lengths,
                             max_examples=values["max_examples"],
                             module=values["mixture_or_task_module"])
            where = values["output_path"] or "stdout"
            print(f"wrote {n} predictions ({predictor.method}) to {where}", file=sys.stderr)
            return 0
        vocab = load_vocabulary(values["vocabulary"], values["checkpoint_path"])
        check_vocab_size(vocab, config)
        prompts = _read_prompts(values)
        if not prompts:
            raise InferError("no prompts: pass --prompt TEXT, lines on stdin, or --task NAME")
        preds, scores = predictor([encode_prompt(vocab, p, lengths["inputs"]) for p in prompts])
        out = open(values["output_path"], "w", encoding="utf-8") if values[  # noqa: SIM115
            "output_path"] else sys.stdout
        try:
            for prompt, pred, score in zip(prompts, preds, scores, strict=True):
                text = vocab.decode(pred)
                if args.json or values["output_path"]:
                    out.write(json.dumps({"inputs": prompt, "prediction": text, "score": score},
                                         ensure_ascii=False) + "\n")
                else:
                    out.write(text + "\n")
        finally:
            if out is not sys.stdout:
                out.close()
        return 0
    except FlanJaxError as e:
        print(f"flan_jax.infer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
