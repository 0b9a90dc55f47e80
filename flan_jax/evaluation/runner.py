"""Runs the evaluation suite on one checkpoint: render, decode, extract, score, report.

Prompts come from the task catalog in `tasks/eval/` (the same seqio tasks that
training-time evaluation uses); decoding from `flan_jax.models.decoding`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import itertools
import logging
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gin
import numpy as np

from flan_jax.data import bad_rows, metrics
from flan_jax.errors import DataFormatError, FlanJaxError
from flan_jax.evaluation import answers, prompts
from flan_jax.evaluation import benchmarks as bm
from flan_jax.evaluation.report import TaskResult, write_all
from flan_jax.evaluation.scoring import macro_average

log = logging.getLogger(__name__)
EVAL_CATALOG = Path(__file__).resolve().parent.parent.parent / "tasks" / "eval"
MODES = ("direct", "cot", "zs", "zs_cot")


@gin.configurable(module="flan_jax.eval")
@dataclasses.dataclass
class EvalConfig:
    """Settings of one evaluation run (gin: `flan_jax.eval.EvalConfig.<field>`).

    modes: direct (few-shot), cot (few-shot chain of thought), zs (zero-shot direct),
    zs_cot (zero-shot "Let's think step by step."). Self-consistency runs on every CoT
    task when `self_consistency_samples` > 0. `mmlu_direct_scoring` ('generate' or
    'rank') picks which MMLU-direct score enters the normalized average; both are reported.
    """

    checkpoint_path: str | None = None
    benchmarks: Sequence[str] = bm.BENCHMARKS
    modes: Sequence[str] = ("direct", "cot")
    tasks: Sequence[str] = ()
    max_examples: int | None = None
    data_dir: str | None = None
    tfds_data_dir: str | None = None
    output_dir: str = "eval_results"
    name: str | None = None
    batch_size: int = 16
    max_input_length: int = 2048
    min_input_length: int = 16  # inputs are padded to a power of two >= this (one jit per size)
    direct_decode_length: int = 64
    cot_decode_length: int = 256
    self_consistency_samples: int = 0
    temperature: float = 0.7
    top_k: int = 40
    seed: int = 0
    mmlu_direct_scoring: str = "generate"
    dtype: str | None = None
    skip_missing: bool = False  # skip tasks whose data is absent (noted) instead of failing
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Unit:
    """One task in one prompting mode."""

    component: str
    benchmark: str
    task: str  # subject, BBH file or language
    spec_name: str
    style: str
    split: str
    cot: bool
    zero_shot: bool = False


def _components(benchmark: str, mode: str, task: str) -> str | None:
    if benchmark == "tydiqa":
        return {"direct": "tydiqa", "zs": "tydiqa_zs"}.get(mode)
    base = {"direct": "direct", "cot": "cot", "zs": "zs", "zs_cot": "zs_cot"}[mode]
    if benchmark == "mgsm":
        name = "mgsm" if mode == "cot" else f"mgsm_{base}"
        return f"{name}_en" if task == "en" else name
    return f"{benchmark}_{base}"


def plan_units(cfg: EvalConfig) -> list[Unit]:
    """Every (task, mode) the settings select, in benchmark order."""
    for b in cfg.benchmarks:
        if b not in bm.BENCHMARKS:
            raise FlanJaxError(f"unknown benchmark {b!r}; use {', '.join(bm.BENCHMARKS)}")
    for m in cfg.modes:
        if m not in MODES:
            raise FlanJaxError(f"unknown mode {m!r}; use {', '.join(MODES)}")
    names = {"mmlu": bm.MMLU_SUBJECTS, "bbh": tuple(bm.BBH_TASKS),
             "tydiqa": bm.TYDIQA_LANGUAGES, "mgsm": bm.MGSM_ALL_LANGUAGES}
    units = []
    for benchmark in bm.BENCHMARKS:
        if benchmark not in cfg.benchmarks:
            continue
        for task in names[benchmark]:
            full = f"{benchmark}_{task}"
            if cfg.tasks and not any(fnmatch.fnmatchcase(task, p) or fnmatch.fnmatchcase(full, p)
                                     for p in cfg.tasks):
                continue
            for mode in cfg.modes:
                component = _components(benchmark, mode, task)
                if component is None:
                    continue
                cot, zero = mode in ("cot", "zs_cot"), mode in ("zs", "zs_cot")
                if benchmark == "mmlu":
                    spec = f"mmlu_cot_{task}" if cot else full
                    style = "zs_cot" if cot else ("zs_noopt" if zero else "fs_noopt")
                    units.append(Unit(component, benchmark, task, spec, style, "test", cot, zero))
                elif benchmark == "tydiqa":
                    style = "zs_noopt" if zero else "fs_noopt"
                    units.append(Unit(component, benchmark, task, full, style, "validation",
                                      False, zero))
                else:
                    style = "zs_cot" if cot else "zs_noopt"
                    units.append(Unit(component, benchmark, task, full, style, "test", cot, zero))
    if not units:
        raise FlanJaxError("the selection matches no task (check --benchmarks, --tasks, --modes)")
    return units


def apply_data_dirs(cfg: EvalConfig) -> str | None:
    """Points the benchmark environment variables at DATA_DIR/{mmlu,bbh,mgsm}; returns the
    TFDS data directory to use (None: TFDS's default)."""
    if cfg.data_dir:
        root = Path(os.path.expanduser(cfg.data_dir))
        for env, sub in ((bm.MMLU_DIR_ENV, "mmlu"), (bm.BBH_DIR_ENV, "bbh"),
                         (bm.MGSM_DIR_ENV, "mgsm")):
            os.environ[env] = str(root / sub)
        if not cfg.tfds_data_dir and (root / "tensorflow_datasets").is_dir():
            return str(root / "tensorflow_datasets")
    return cfg.tfds_data_dir


def check_mgsm_file(path: str) -> None:
    """Reports a malformed MGSM row with its file and line."""
    with open(path, encoding="utf-8", newline="") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2:
                raise DataFormatError(f"{path}:{line_no}: expected 2 tab-separated columns "
                                      f"(question, answer), found {len(parts)}")
            if not re.fullmatch(r"-?\d+", parts[1].strip().replace(",", "")):
                raise DataFormatError(f"{path}:{line_no}: answer {parts[1]!r} is not an integer")


class Model:
    """Batched greedy decoding, sampling and rank classification of one checkpoint."""

    def __init__(self, params: Any, config: Any, vocabulary: Any, batch_size: int,
                 max_input_length: int, seed: int, min_input_length: int = 16):
        import jax

        self.params, self.config, self.vocab = params, config, vocabulary
        self.batch_size, self.max_input_length = batch_size, max_input_length
        self.min_input_length = min_input_length
        self.rng = jax.random.key(seed)
        self.examples_done = 0

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for text in texts:
            ids = list(self.vocab.encode(text))[-(self.max_input_length - 1):]
            rows.append([*ids, 1])
        length = self.min_input_length
        while length < max(len(r) for r in rows):
            length *= 2
        length = min(length, self.max_input_length)
        out = np.zeros((self.batch_size, length), np.int32)
        out[:, 0] = 1  # padding rows: a lone EOS
        for i, row in enumerate(rows):
            out[i, :len(row)] = row
        return out

    def _decode(self, ids: Sequence[int]) -> str:
        kept = []
        for t in ids:
            if t == 1:
                break
            if 1 < t < self.vocab.vocab_size:
                kept.append(int(t))
        return self.vocab.decode(kept)

    def _batches(self, texts: Sequence[str]):
        for start in range(0, len(texts), self.batch_size):
            yield start, texts[start:start + self.batch_size]

    def generate(self, texts: Sequence[str], max_length: int, bar=None) -> list[str]:
        from flan_jax.models.decoding import greedy_decode

        out: list[str] = []
        for _, chunk in self._batches(texts):
            result = greedy_decode(self.params, self._encode(chunk), config=self.config,
                                   max_decode_length=max_length)
            tokens = np.asarray(result.tokens)
            out.extend(self._decode(tokens[i]) for i in range(len(chunk)))
            if bar is not None:
                bar.update(len(chunk))
        return out

    def sample(self, texts: Sequence[str], n: int, max_length: int, temperature: float,
               top_k: int) -> list[list[str]]:
        import jax

        from flan_jax.models.decoding import sample_decode

        out: list[list[str]] = [[] for _ in texts]
        for start, chunk in self._batches(texts):
            encoded = self._encode(chunk)
            for _ in range(n):
                self.rng, key = jax.random.split(self.rng)
                result = sample_decode(self.params, encoded, key, config=self.config,
                                       max_decode_length=max_length, temperature=temperature,
                                       top_k=min(top_k, self.config.vocab_size))
                tokens = np.asarray(result.tokens)
                for i in range(len(chunk)):
                    out[start + i].append(self._decode(tokens[i]))
        return out

    def rank(self, texts: Sequence[str], options: Sequence[str]) -> list[int]:
        """Index of the option with the highest log-likelihood, for each input."""
        from flan_jax.models.decoding import score_targets

        targets = [[*self.vocab.encode(o), 1] for o in options]
        width = max(len(t) for t in targets)
        target_ids = np.zeros((len(options), width), np.int32)
        for i, t in enumerate(targets):
            target_ids[i, :len(t)] = t
        best: list[int] = []
        for _, chunk in self._batches(texts):
            encoded = self._encode(chunk)
            scores = np.stack([np.asarray(score_targets(
                self.params, encoded, np.repeat(target_ids[j:j + 1], len(encoded), 0),
                config=self.config)) for j in range(len(options))], axis=1)
            best.extend(int(np.argmax(scores[i])) for i in range(len(chunk)))
        return best


def load_model(cfg: EvalConfig, vocabulary: Any) -> Model:
    """Loads the checkpoint (any layout, via `load_any`); 'random:SIZE' makes a randomly
    initialised model of that size with the vocabulary's size (smoke tests)."""
    import jax

    from flan_jax.interop.checkpoints import load_any
    from flan_jax.models.config import get_config
    from flan_jax.models.t5 import init_params

    if not cfg.checkpoint_path:
        raise FlanJaxError("no checkpoint: pass --gin.CHECKPOINT_PATH=... or --checkpoint")
    if cfg.checkpoint_path.startswith("random:"):
        config = get_config(cfg.checkpoint_path.partition(":")[2],
                            vocab_size=vocabulary.vocab_size)
        params = init_params(config, jax.random.key(cfg.seed))
    else:
        params, config = load_any(os.path.expanduser(cfg.checkpoint_path), dtype=cfg.dtype)
    return Model(params, config, vocabulary, cfg.batch_size, cfg.max_input_length, cfg.seed,
                 cfg.min_input_length)


def _score(unit: Unit, target: str, fields: dict, prediction: str) -> tuple[str, str, float, float | None]:
    """(extracted answer, gold answer, correct 0/100 or EM, F1) of one prediction."""
    if unit.benchmark == "mmlu":
        gold = str(fields["answer"]).strip().upper()
        pred = answers.mmlu_answer(prediction, unit.cot)
    elif unit.benchmark == "bbh":
        gold, form = answers.bbh_gold(bm.BBH_TASKS[unit.task][0], target)
        pred = answers.bbh_answer(form, prediction, unit.cot)
    elif unit.benchmark == "mgsm":
        gold = str(fields["answer"])
        pred = answers.mgsm_answer(prediction, unit.cot)
    else:
        pred = prediction.strip().split("\n", 1)[0].strip()
        squad = metrics.squad([target], [pred])
        return pred, target, squad["em"], squad["f1"]
    return pred, gold, 100.0 * (bool(gold) and pred == gold), None


def _by_length(fn: Any, texts: list[str]) -> list[Any]:
    """fn over the texts sorted by length (less padding per batch), in the original order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    results = fn([texts[i] for i in order])
    out: list[Any] = [None] * len(texts)
    for position, i in enumerate(order):
        out[i] = results[position]
    return out


def _answer_only(unit: Unit, target: str, prediction: str) -> str:
    return _score(unit, target, {"answer": ""}, prediction)[0]


def _text_targets(unit: Unit, items: list[tuple[int, str, str, dict]]) -> str | None:
    """A note on the BBH targets of `unit` that are not in its task's form (scored as
    text, see `answers.bbh_gold`), or None."""
    if unit.benchmark != "bbh":
        return None
    kind = bm.BBH_TASKS[unit.task][0]
    odd = [(i, t) for i, _, t, _ in items if answers.bbh_gold(kind, t)[1] != kind]
    if not odd:
        return None
    listed = ", ".join(f"#{i} {t!r}" for i, t in odd)
    return (f"BBH {unit.task}: {len(odd)} target(s) are not {kind} answers ({listed}); each is "
            "scored by matching the answer text, as BBH's own exact-match evaluation does")


def run(cfg: EvalConfig) -> dict[str, Any]:
    """Runs the evaluation and writes the reports; returns components, results and paths."""
    import tqdm

    from flan_jax.data import vocab as vocab_lib
    from flan_jax.data.datasource import TaskData
    from flan_jax.data.registry import load_catalog
    from flan_jax.data.templates import Renderer

    if cfg.mmlu_direct_scoring not in ("generate", "rank"):
        raise FlanJaxError(f"mmlu_direct_scoring must be 'generate' or 'rank', "
                           f"got {cfg.mmlu_direct_scoring!r}")
    units = plan_units(cfg)
    tfds_dir = apply_data_dirs(cfg)
    catalog = load_catalog([EVAL_CATALOG])
    # The checkpoint's own vocabulary (a training run's record, a Hugging Face spiece.model).
    path = None if (cfg.checkpoint_path or "").startswith("random:") else cfg.checkpoint_path
    vocabulary = vocab_lib.for_checkpoint(path)
    notes: list[str] = []

    # Check the data first: a missing file fails with the benchmark's expected layout.
    task_data: dict[str, TaskData] = {}
    missing: dict[str, list[str]] = {}
    skipped: set[Unit] = set()
    for unit in units:
        spec = catalog.tasks[unit.spec_name]
        if tfds_dir and spec.source.kind == "tfds":
            spec = dataclasses.replace(spec, source=dataclasses.replace(spec.source,
                                                                        data_dir=tfds_dir))
        if unit.spec_name not in task_data:
            task_data[unit.spec_name] = TaskData(spec)
        data = task_data[unit.spec_name]
        reason = data.source.check(unit.split)
        if reason:
            item = f"{unit.spec_name}: {reason}"
            if item not in missing.get(unit.benchmark, []):
                missing.setdefault(unit.benchmark, []).append(item)
            skipped.add(unit)
            continue
        if unit.benchmark == "mmlu" and unit.cot and not unit.zero_shot and \
                not os.path.isfile(prompts.mmlu_cot_path()):
            skipped.add(unit)
            note = (f"MMLU-CoT disabled: no CoT exemplars at {prompts.mmlu_cot_path()} "
                    f"(set ${bm.MMLU_COT_ENV}); MMLU direct is unaffected")
            if note not in notes:
                notes.append(note)
        if unit.benchmark == "bbh" and not unit.zero_shot:
            prompts.read_bbh_prompt(os.path.join(os.environ.get(bm.BBH_DIR_ENV, ""),
                                                 "cot-prompts", f"{unit.task}.txt"))
        if unit.benchmark == "mgsm":
            check_mgsm_file(data.source.paths(unit.split)[0])
            if not unit.zero_shot:
                try:
                    prompts.mgsm_prompt(unit.task)
                except FlanJaxError as e:
                    skipped.add(unit)
                    note = f"MGSM-{unit.task} skipped: {str(e).splitlines()[0]}"
                    if note not in notes:
                        notes.append(note)
    if missing and cfg.skip_missing:
        for benchmark, items in missing.items():
            notes.append(f"{benchmark}: skipped {len(items)} task(s) without data "
                         f"(first: {items[0]})")
    elif missing:
        lines = []
        for benchmark, items in missing.items():
            lines.append(f"{benchmark}: {len(items)} task(s) cannot read their data:")
            lines += [f"  - {item}" for item in items[:5]]
            if len(items) > 5:
                lines.append(f"  - ... and {len(items) - 5} more")
            lines += ["Expected layout:", bm.LAYOUTS[benchmark], ""]
        lines.append("Select fewer benchmarks with --benchmarks or tasks with --tasks, or "
                     "pass --skip_missing.")
        raise FlanJaxError("\n".join(lines))
    for note in notes:
        log.warning(note)
    units = [u for u in units if u not in skipped]

    # Render every prompt.
    rendered: list[tuple[Unit, list[tuple[int, str, str, dict]]]] = []
    try:
        for unit in units:
            if unit.zero_shot:
                os.environ[bm.ZERO_SHOT_ENV] = "1"
            else:
                os.environ.pop(bm.ZERO_SHOT_ENV, None)
            data = task_data[unit.spec_name]
            renderer = Renderer(data.spec, unit.style,
                                token_length=lambda text: len(vocabulary.encode(text)))
            pool = data.pool if renderer.few_shot else ()
            in_pool = renderer.few_shot is not None and unit.split == renderer.few_shot.split
            items = []
            for index, fields in itertools.islice(data.examples(unit.split), cfg.max_examples):
                out = renderer.render(fields, index, 0, pool, query_in_pool=in_pool)
                items.append((index, out.inputs, out.targets, fields))
            rendered.append((unit, items))
            note = _text_targets(unit, items)
            if note and note not in notes:
                notes.append(note)
    finally:
        os.environ.pop(bm.ZERO_SHOT_ENV, None)
    notes += [f"skipped rows (within the malformed-row limit) in {line}"
              for line in bad_rows.summary()]

    model = load_model(cfg, vocabulary)
    total = sum(len(items) for _, items in rendered)
    results: list[TaskResult] = []
    predictions: list[dict[str, Any]] = []
    started = time.time()
    with tqdm.tqdm(total=total, unit="ex", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for unit, items in rendered:
            bar.set_description(f"{unit.component}/{unit.task}")
            inputs = [x for _, x, _, _ in items]
            length = cfg.cot_decode_length if unit.cot else cfg.direct_decode_length
            preds = _by_length(functools.partial(model.generate, max_length=length, bar=bar),
                               inputs)
            ranks = None
            if unit.component == "mmlu_direct":
                ranks = _by_length(functools.partial(
                    model.rank, options=["(A)", "(B)", "(C)", "(D)"]), inputs)
            samples = None
            if unit.cot and cfg.self_consistency_samples > 0:
                samples = _by_length(functools.partial(
                    model.sample, n=cfg.self_consistency_samples, max_length=length,
                    temperature=cfg.temperature, top_k=cfg.top_k), inputs)
            scores, f1s, rank_hits, sc_hits, agreements = [], [], [], [], []
            for i, ((index, text, target, fields), pred) in enumerate(zip(items, preds)):
                answer, gold, score, f1 = _score(unit, target, fields, pred)
                record = {"component": unit.component, "benchmark": unit.benchmark,
                          "task": unit.task, "seqio_task": f"{unit.spec_name}_{unit.style}",
                          "index": index, "inputs": text, "target": target, "gold": gold,
                          "prediction": pred, "answer": answer, "score": score}
                scores.append(score)
                if f1 is not None:
                    f1s.append(f1)
                    record["f1"] = f1
                if ranks is not None:
                    choice = "ABCD"[ranks[i]]
                    rank_hits.append(100.0 * (choice == gold))
                    record["rank_answer"] = choice
                if samples is not None:
                    extracted = [_answer_only(unit, target, s) for s in samples[i]]
                    voted, agreement = answers.majority_vote(extracted)
                    sc_hits.append(100.0 * (bool(gold) and voted == gold))
                    agreements.append(agreement)
                    record.update(samples=samples[i], sample_answers=extracted,
                                  sc_answer=voted, agreement=agreement)
                predictions.append(record)
            n = len(items)
            results.append(TaskResult(unit.component, unit.task, n, macro_average(scores) or 0.0,
                                      macro_average(f1s)))
            if ranks is not None:
                results.append(TaskResult("mmlu_direct_rank", unit.task, n,
                                          macro_average(rank_hits) or 0.0))
            if samples is not None:
                results.append(TaskResult(f"{unit.component}_sc{cfg.self_consistency_samples}",
                                          unit.task, n, macro_average(sc_hits) or 0.0,
                                          agreement=macro_average(agreements)))
    elapsed = time.time() - started

    by_component: dict[str, list[float]] = {}
    for result in results:
        by_component.setdefault(result.component, []).append(result.score)
    components = {c: macro_average(v) for c, v in by_component.items()}
    for component in ("tydiqa", "tydiqa_zs"):
        f1s = [r.f1 for r in results if r.component == component and r.f1 is not None]
        if f1s:
            components[f"{component}_f1"] = macro_average(f1s)
    if cfg.mmlu_direct_scoring == "rank" and "mmlu_direct_rank" in components:
        components["mmlu_direct_generate"] = components.get("mmlu_direct")
        components["mmlu_direct"] = components.pop("mmlu_direct_rank")
    name = cfg.name or (Path(cfg.checkpoint_path).name if cfg.checkpoint_path else "model")
    settings = {"checkpoint": cfg.checkpoint_path, "benchmarks": ",".join(cfg.benchmarks),
                "modes": ",".join(cfg.modes), "max_examples": cfg.max_examples,
                "self_consistency_samples": cfg.self_consistency_samples,
                "temperature": cfg.temperature, "mmlu_direct_scoring": cfg.mmlu_direct_scoring,
                "examples": total, "seconds": round(elapsed, 1),
                "examples_per_second": round(total / max(elapsed, 1e-9), 2)}
    paths = write_all(cfg.output_dir, name, components, results, predictions, settings, notes)
    return {"components": components, "results": results, "paths": paths, "notes": notes,
            "examples": total}
