"""`python -m flan_jax.train --gin_file=gin/runs/finetune.gin --gin.MODEL_DIR="'/tmp/run'"`

The t5x command line on flan_jax: gin files and `--gin.NAME=value` bindings with t5x's
macro names (MODEL_DIR, MIXTURE_OR_TASK_NAME, MIXTURE_OR_TASK_MODULE, TASK_FEATURE_LENGTHS,
TRAIN_STEPS, BATCH_SIZE, DROPOUT_RATE, INITIAL_CHECKPOINT_PATH, EVAL_PERIOD, EVAL_STEPS).
`train()` below reads top to bottom: config → mesh → data → state (restored, initial
checkpoint, or fresh) → one jitted step → loop with checkpoints, eval and reports.

It prints five lines on the run at start (the whole configuration goes to MODEL_DIR/
config.gin, and MODEL_DIR/operative_config.gin at the end) and where everything is at the
end; `--verbose` also prints the gin configuration and TensorFlow's start-up notes.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gin

from flan_jax import console
from flan_jax.errors import FlanJaxError, RunStopped
from flan_jax.kernels.host_memory import keep_freed_memory

# Parameter name of `train` -> the t5x macro that gin files bind it to.
MACROS = {"model_dir": "MODEL_DIR", "mixture_or_task_name": "MIXTURE_OR_TASK_NAME",
          "task_feature_lengths": "TASK_FEATURE_LENGTHS", "train_steps": "TRAIN_STEPS",
          "batch_size": "BATCH_SIZE", "model_config": "MODEL_CONFIG",
          "mixture_or_task_module": "MIXTURE_OR_TASK_MODULE",
          "initial_checkpoint_path": "INITIAL_CHECKPOINT_PATH", "eval_period": "EVAL_PERIOD",
          "eval_steps": "EVAL_STEPS"}


class NonFiniteLossError(RunStopped):
    """Training produced a NaN or infinite loss."""


def non_finite_message(loss: float, step: int, last_checkpoint: int | None, model_dir: Path,
                       learning_rate: float) -> str:
    """What to do about a non-finite loss at `step` (1-based); the learning rate is blamed
    only when the parameters have been updated (the loss of step k is computed with the
    parameters after k - 1 updates)."""
    if last_checkpoint is None:
        saved, then = f"no checkpoint was saved in {model_dir} yet", "start again"
    else:
        saved = (f"the last good checkpoint is step {last_checkpoint} in {model_dir} (nothing "
                 "was saved after it)")
        then = "resume"
    if step == 1:
        cause = ("Its loss comes from the initial parameters, before any update, so the "
                 "learning rate is not the cause. Check the data (token ids at or above the "
                 "model's vocab_size), the initial checkpoint and the dtypes (float16 "
                 "overflows).")
    else:
        cause = (f"The parameters had been updated {step - 1} time(s), so the updates may have "
                 f"diverged: lower the learning rate (now {learning_rate:g}), keep z-loss on "
                 "(train.z_loss), or check the data.")
    return (f"non-finite loss ({loss}) at step {step}. Training stopped; {saved}. {cause} "
            f"Then run the same command to {then}.")


def train(*, model_dir: str = gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, batch_size: int = gin.REQUIRED,
          model_config: Any = gin.REQUIRED, optimizer: Any = None,
          mixture_or_task_module: str | None = None, initial_checkpoint_path: str | None = None,
          eval_period: int = 1000, eval_steps: int = 20, eval_mixture_or_task_name: str | None = None,
          infer_eval_tasks: Sequence[str] = (), rank_eval_tasks: Sequence[str] = (),
          infer_eval_split: str = "test",
          infer_eval_examples: int = 100, infer_eval_period: int | None = None,
          infer_max_decode_length: int | None = None,
          checkpoint_period: int = 1000, keep_checkpoints: int | None = 3,
          async_checkpoints: bool = True, num_partitions: int = 1,
          mesh_shape: Sequence[int] | None = None, distributed: Any = None,
          seed: int = 0, pack: bool = True, shuffle_buffer_size: int | None = None,
          use_cached: bool = False, cache_dirs: Sequence[str] = (), z_loss: float = 1e-4,
          label_smoothing: float = 0.0,
          loss_normalizing_factor: float | str | None = None, num_microbatches: int = 1,
          vocabulary: str | None = None, log_period: int = 10, peak_flops: float | None = None,
          plot: bool = True, progress_bar: bool = True, stop_after_steps: int | None = None,
          truncation_sample_size: int = 1000,
          debug_kill_at_step: int | None = None,
          compilation_cache_dir: str | None = None) -> dict[str, Any]:
    """Trains (or resumes training) and returns the final metrics.

    `vocabulary` sets $FLAN_JAX_VOCAB ('byte' or a SentencePiece file) for the tasks.
    `use_cached` reads the tasks from the output of seqio's cache job
    (`seqio.scripts.cache_tasks_main --output_cache_dir=DIR`), looked up in `cache_dirs`.
    `infer_eval_tasks`: seqio tasks scored by greedy decoding + their metrics (one
    `seqio.Evaluator` each, built before training so the examples are read once) before
    training, every `infer_eval_period` steps and at the end; `rank_eval_tasks` (some of
    them) are also scored by rank classification over their listed options. `stop_after_steps` ends
    this invocation early (as a preemption would); `debug_kill_at_step` SIGKILLs the
    process after that step (fault injection for the exact-resume test).
    `truncation_sample_size` training examples are checked for inputs or targets longer
    than `task_feature_lengths` before training (MODEL_DIR/truncation.json; 0: skip).
    Nothing is written to MODEL_DIR before the configuration and MODEL_DIR are accepted.
    `compilation_cache_dir`: JAX's persistent compilation cache (default: the user cache
    directory, see `flan_jax.training.compilation_cache`).
    """
    import jax
    import numpy as np

    from flan_jax.data import vocab
    from flan_jax.data.registry import BUDGET_ENV, budget_cap, task_families
    from flan_jax.interop import checkpoints
    from flan_jax.training import (
        compilation_cache,
        compiler,
        config_checks,
        in_loop_eval,
        optimizers,
        partitioning,
        pipeline,
        run_dir,
        truncation,
    )
    from flan_jax.training.checkpoints import TrainCheckpoints
    from flan_jax.training.report import Reporter, run_summary, where_things_are
    from flan_jax.training.step import TrainState, init_train_state, make_eval_step, make_train_step

    t0 = time.perf_counter()
    # -- configuration --------------------------------------------------------------------
    compilation_cache.enable(compilation_cache_dir)
    if vocabulary:
        os.environ["FLAN_JAX_VOCAB"] = vocabulary
    # Few-shot prompts are pruned to fit the inputs (with EOS) rather than truncated.
    os.environ[BUDGET_ENV] = str(min(task_feature_lengths["inputs"] - 1,
                                     budget_cap() or task_feature_lengths["inputs"]))
    if "flan_jax.catalog" in sys.modules:
        # Registered at import, before gin was parsed: register again so that the tasks
        # take the configured vocabulary (`vocabulary` or flan_jax.data.vocab.get_vocabulary.path)
        # and few-shot budget.
        from flan_jax.data.registry import register_catalog
        register_catalog()
    if distributed is not None:
        distributed()
    if cache_dirs:
        import seqio
        seqio.add_global_cache_dirs(list(cache_dirs))
    with gin.unlock_config():  # the task module may declare gin configurables
        importlib.import_module(mixture_or_task_module or "flan_jax.catalog")
    trained_on = pipeline.task_names(mixture_or_task_name)  # an unknown name stops here
    config = model_config
    optimizer = optimizer if optimizer is not None else optimizers.make_optimizer()
    config_checks.check_vocabulary(config.vocab_size, [
        mixture_or_task_name, *infer_eval_tasks,
        *([eval_mixture_or_task_name] if eval_mixture_or_task_name else [])])
    model_dir = Path(model_dir).expanduser().absolute()
    run_dir.ensure_writable(model_dir)

    # -- mesh, state shapes and shardings -------------------------------------------------
    mesh = partitioning.make_mesh(num_partitions=num_partitions, mesh_shape=mesh_shape)
    rng = jax.random.key(seed)
    abstract = jax.eval_shape(lambda: init_train_state(config, optimizer, rng))
    shardings = TrainState(partitioning.replicated(mesh),
                           partitioning.param_shardings(config, mesh),
                           partitioning.state_shardings(abstract.opt_state, config, mesh))
    abstract = jax.tree_util.tree_map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)

    # -- state: resume from MODEL_DIR, else initial checkpoint, else fresh ------------------
    ckpt = TrainCheckpoints(model_dir, config, period=checkpoint_period, keep=keep_checkpoints,
                            async_save=async_checkpoints)
    restored = ckpt.restore_or_none(abstract)  # refuses a MODEL_DIR of another model
    if restored is not None:
        state, data_state, notes = restored
        for note in notes:
            print(note, file=sys.stderr)
        print(f"Resumed from {model_dir}/{int(state.step)} "
              f"({data_state['batches_consumed']} batches consumed)")
    else:
        data_state = {"batches_consumed": 0}
        params = None
        if initial_checkpoint_path:
            params, _ = checkpoints.load_any(initial_checkpoint_path, config=config)
            print(f"Initial parameters from {initial_checkpoint_path}")
        state = jax.jit(lambda p: init_train_state(config, optimizer, rng, p),
                        out_shardings=shardings)(params)
    primary = jax.process_index() == 0
    if primary:  # the configuration is accepted: record it
        (model_dir / "config.gin").write_text(gin.config_str())
        print(run_summary(config, mixture=mixture_or_task_name, num_tasks=len(trained_on),
                          train_steps=train_steps, batch_size=batch_size,
                          lengths=task_feature_lengths, model_dir=model_dir))
        vocab.record(model_dir, mixture_or_task_name)  # for infer, eval and convert --to hf

    # -- data ------------------------------------------------------------------------------
    host_batch = partitioning.per_host_batch_size(batch_size)
    shard = partitioning.host_shard_info()
    train_iter = pipeline.train_iterator(
        mixture_or_task_name, task_feature_lengths, host_batch, seed=seed, pack=pack,
        shard_info=shard, consumed=data_state["batches_consumed"],
        shuffle_buffer_size=shuffle_buffer_size, use_cached=use_cached,
        report_path=model_dir / f"data_report{_host_suffix()}.json")
    eval_name = eval_mixture_or_task_name or mixture_or_task_name
    eval_batches = pipeline.eval_batches(eval_name, task_feature_lengths, host_batch,
                                              eval_steps, split="validation", pack=pack,
                                              shard_info=shard, use_cached=use_cached
                                              ) if eval_steps else []
    eval_suite = in_loop_eval.EvalSuite.load(infer_eval_tasks, rank_eval_tasks,
                                              infer_eval_split, task_feature_lengths,
                                              infer_eval_examples)

    if truncation_sample_size and primary:
        text, cut = truncation.report(mixture_or_task_name, task_feature_lengths,
                                      truncation_sample_size, model_dir, use_cached=use_cached)
        print(text, file=sys.stderr if cut else sys.stdout)
    print(f"Data and eval sets ready ({time.perf_counter() - t0:.1f}s)")
    # -- one jitted train step and eval step ---------------------------------------------
    batch_shardings = partitioning.batch_sharding(mesh)
    options = compiler.compiler_options()
    step_fn = jax.jit(
        make_train_step(config, optimizer, z_loss=z_loss, label_smoothing=label_smoothing,
                        loss_normalizing_factor=loss_normalizing_factor,
                        num_microbatches=num_microbatches),
        in_shardings=(shardings, batch_shardings, partitioning.replicated(mesh)),
        out_shardings=(shardings, partitioning.replicated(mesh)), donate_argnums=(0,),
        compiler_options=options)
    eval_fn = jax.jit(make_eval_step(config, z_loss=z_loss,
                                     loss_normalizing_factor=loss_normalizing_factor),
                      in_shardings=(shardings.params, batch_shardings),
                      compiler_options=options)
    dropout_rng = jax.random.fold_in(rng, 1)
    schedule = optimizers.learning_rate_schedule()

    infer_period = infer_eval_period or eval_period or train_steps

    def run_eval(step: int, infer: bool = True) -> None:
        if eval_batches:
            totals: dict[str, float] = {}
            for b in eval_batches:
                for k, v in eval_fn(state.params, partitioning.global_batch(b, mesh)).items():
                    totals[k] = totals.get(k, 0.0) + float(v)
            report.eval_loss(step, totals, len(eval_batches))
        if eval_suite and infer:
            report.infer_eval(step, eval_suite.run(
                state.params, config,
                infer_max_decode_length or task_feature_lengths["targets"], step=step,
                progress=progress_bar and jax.process_index() == 0))

    # -- loop ------------------------------------------------------------------------------
    report = Reporter(model_dir, config, train_steps=train_steps, batch_size=batch_size,
                      lengths=task_feature_lengths, peak_flops=peak_flops, log_period=log_period,
                      progress_bar=progress_bar, first_step=int(state.step))
    stop = {"signal": None}

    def on_sigterm(signum: int, frame: Any) -> None:
        stop["signal"] = signum

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    start_step = int(state.step)
    if start_step == 0:
        run_eval(0)
    last_good = start_step
    try:
        for step in range(start_step, train_steps):
            batch = next(train_iter)
            state, metrics = step_fn(state, partitioning.global_batch(batch, mesh), dropout_rng)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not np.isfinite(metrics["loss"]):
                ckpt.wait()
                raise NonFiniteLossError(non_finite_message(
                    metrics["loss"], step + 1, ckpt.latest_step(), model_dir,
                    float(schedule(step))))
            metrics["learning_rate"] = float(schedule(step))
            report.train(step + 1, metrics)
            last_good = step + 1
            done = last_good == train_steps
            ckpt.save(state, train_iter.state(), force=done)
            if (eval_period and last_good % eval_period == 0) or done:
                run_eval(last_good, infer=done or last_good % infer_period == 0)
            if stop["signal"] is not None:
                ckpt.save(state, train_iter.state(), force=True)
                ckpt.close()
                report.close()
                if primary:
                    print("\n" + where_things_are(
                        model_dir, f"SIGTERM: saved a checkpoint at step {last_good} in "
                                   f"{model_dir}; exiting. Run the same command to resume."))
                return {"step": last_good, "stopped": "SIGTERM"}
            if debug_kill_at_step is not None and last_good == debug_kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            if stop_after_steps is not None and last_good - start_step >= stop_after_steps:
                break
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        ckpt.close()
        report.close()
    if primary:
        (model_dir / "operative_config.gin").write_text(gin.operative_config_str())
    summary = report.finish(
        eval_suite.decoded, plot=plot, trained_on=trained_on,
        families=task_families([*trained_on, *eval_suite.decoded]),
        note=f"`{mixture_or_task_name}`, {train_steps} steps of {batch_size} sequences, "
             f"{report.num_params:,} parameters; {infer_eval_examples} `{infer_eval_split}` "
             "examples per task.")
    summary["step"] = last_good
    if primary:
        headline = (f"Finished: step {last_good} of {train_steps}." if last_good == train_steps
                    else f"Stopped at step {last_good} of {train_steps} "
                         "(train.stop_after_steps); run the same command to continue.")
        print("\n" + where_things_are(model_dir, headline))
    return summary


def _host_suffix() -> str:
    """'' on one host, '.hostN' on host N of several (each reads its own shard)."""
    import jax

    return f".host{jax.process_index()}" if jax.process_count() > 1 else ""


# Write failures that are the filesystem's, not the program's: reported in one paragraph.
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                errno.EFBIG}


def _macro_for(message: str) -> str | None:
    for param, macro in MACROS.items():
        if f"'{param}'" in message or f"{macro}/" in message or f"%{macro}" in message:
            return macro
    return None


def _fail(message: str) -> int:
    message = message.split("\n  In call to configurable")[0]  # gin's note on the call site
    print(f"flan_jax.train: {message}", file=sys.stderr)
    return 2


def parse_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """t5x-style flags -> (gin files, bindings, search paths)."""
    files, bindings, paths = [], [], []
    for arg in argv:
        if arg.startswith("--gin_file="):
            files.append(arg.split("=", 1)[1])
        elif arg.startswith("--gin_search_paths="):
            paths += [p for p in arg.split("=", 1)[1].split(",") if p]
        elif arg.startswith("--gin.") and "=" in arg:
            name, value = arg[len("--gin."):].split("=", 1)
            bindings.append(f"{name} = {value}")
        elif arg.startswith("--gin_bindings="):
            bindings.append(arg.split("=", 1)[1])
        else:
            raise ValueError(f"unknown flag {arg!r}; use --gin_file=FILE, --gin.NAME=VALUE, "
                             "--gin_bindings='NAME = VALUE', --gin_search_paths=DIR,DIR or "
                             f"{console.VERBOSE_FLAG}")
    return files, bindings, paths


_REGISTERED = False


def register() -> None:
    """Makes `train` configurable as `train` in gin files (once per process)."""
    global _REGISTERED
    if not _REGISTERED:
        gin.external_configurable(train, "train", module="flan_jax.train")
        _REGISTERED = True


def add_gin_search_paths(paths: Sequence[str] = ()) -> None:
    """Searches `paths`, then the repository's gin/ for included gin files, and the working
    directory last: gin's fallback treats 'runs/x.gin' as package 'runs' and fails on a
    ./runs directory (a run dir) or a namespace package such as tests/models."""
    repo_gin = Path(__file__).resolve().parent.parent / "gin"
    for path in [*paths, str(repo_gin)]:
        gin.add_config_file_search_path(path)
    prefixes = gin.config._LOCATION_PREFIXES
    if "" in prefixes:
        prefixes.remove("")
        prefixes.append("")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = console.VERBOSE_FLAG in argv
    argv = [a for a in argv if a != console.VERBOSE_FLAG]
    keep_freed_memory()
    console.start(verbose)
    register()
    # Modules declaring gin configurables, imported before the config is parsed and locked.
    from flan_jax.training import optimizers, partitioning  # noqa: F401
    try:
        files, bindings, paths = parse_flags(argv)
    except ValueError as e:
        return _fail(str(e))
    if not files:
        return _fail("no --gin_file given. Try: python -m flan_jax.train "
                     "--gin_file=gin/runs/demo.gin")
    add_gin_search_paths(paths)
    files = [str(Path(f).absolute()) if Path(f).is_file() else f for f in files]
    root = logging.getLogger()
    level, root.level = root.level, logging.CRITICAL  # gin logs each search-path miss
    try:
        gin.parse_config_files_and_bindings(files, bindings, finalize_config=True)
    except (ValueError, KeyError, SyntaxError, OSError, ImportError, TypeError, NameError) as e:
        text = (str(e).splitlines()[0] if str(e) else type(e).__name__).rstrip(".")
        macro = _macro_for(str(e))
        if "not subsequently overridden" in str(e) and macro:
            return _fail(f"the required macro {macro} is not set. Add "
                         f"--gin.{macro}=... to the command line (strings in quotes, e.g. "
                         f"--gin.{macro}=\"'value'\") or bind it in a gin file.")
        if "No configurable matching" in str(e) or "parameter named" in str(e) or (
                "unknown" in str(e).lower()):
            return _fail(f"unknown gin binding: {text}. Check the spelling against the "
                         "configurable's parameters (the operative config of a previous run, "
                         "MODEL_DIR/config.gin, lists them) or drop the binding.")
        return _fail(f"cannot read the gin configuration ({type(e).__name__}: {text}). "
                     "Check the --gin_file paths (searched in --gin_search_paths, gin/ and "
                     "the current directory) and the binding syntax NAME=VALUE with Python "
                     "literals (strings quoted).")
    finally:
        root.level = level
    configured = gin.get_configurable(train)
    if verbose:
        print("Gin configuration:\n" + gin.config_str())
    from flan_jax.training.config_checks import macro_warning
    if warning := macro_warning():
        print(f"flan_jax.train: {warning}", file=sys.stderr)
    try:
        configured()
    except RuntimeError as e:
        if "Required bindings" in str(e) or "gin.REQUIRED" in str(e):
            macro = _macro_for(str(e))
            name = macro or str(e)
            return _fail(f"the required setting {name} is missing. Add --gin.{name}=... "
                         "or bind it in a gin file (see gin/runs/finetune.gin).")
        raise
    except RunStopped as e:
        _fail(str(e))
        return 1
    except FlanJaxError as e:  # gin appends "In call to configurable 'train' (...)": drop it
        return _fail(str(e).split("\n  In call to configurable")[0])
    except OSError as e:
        if e.errno not in _DISK_ERRORS:
            raise
        from flan_jax.training.run_dir import write_failure
        _fail(f"{write_failure(e)} Training stopped; the checkpoints saved before are kept. "
              "Free some space or fix the permissions, then run the same command to resume.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(importlib.import_module("flan_jax.train").main())
