"""gin/t5x/*.gin parse and evaluate against stand-ins with t5x's real names and signatures.

t5x is not installable here, so this module doubles as a script: run as `__main__` (in a
subprocess, so gin's global registry stays clean), it builds stand-in modules `t5x.*`
whose configurables have the same names and parameter names as t5x's, defines
`train` (what `import __main__ as train_script` binds), parses the gin files and calls
`train()` with every binding evaluated. Any typo in a configurable or parameter name
makes gin fail. The stand-in `train` then does what t5x does after gin is locked: import
MIXTURE_OR_TASK_MODULE, look the mixture up, compare vocabularies and (byte vocabulary)
read a batch, so a task module that declares gin configurables at import fails here too.

Where each signature was checked (google-research/t5x on GitHub):
- __main__.train: t5x/train.py `train(*, model, train_dataset_cfg, ...)`
  (commit 00d04118ea315d3dbd847adf807435c239e8691f; current finetune.gin binds the same names)
- utils.DatasetConfig / SaveCheckpointConfig / RestoreCheckpointConfig / CheckpointConfig /
  create_learning_rate_scheduler: t5x/utils.py (commit 019f2a18f51f99f9fbb45dbbc98f738419ed73f7)
- partitioning.PjitPartitioner.__init__, standard_logical_axis_rules: t5x/partitioning.py
  (both the version with ici/dcn_mesh_shape and the older one with use_cpu_pjit; only
  num_partitions and logical_axis_rules are bound here)
- trainer.Trainer.__init__: t5x/trainer.py (commit 01c23d8d1b2daec1db47b6e3316ff125c784d95c)
- adafactor.Adafactor.__init__, standard_logical_factor_rules: t5x/adafactor.py
- models.EncoderDecoderModel.__init__: t5x/models.py
- examples.t5.network.T5Config / Transformer: t5x/examples/t5/network.py
  (commit 0ef03325e9aa58d5cb6aad92fdbdc02c44b23543)
- gin_utils.summarize_gin_config(model_dir, summary_writer, step): t5x/gin_utils.py
- seqio.SentencePieceVocabulary is the real seqio class (constructed lazily, no file read).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GIN_DIR = REPO / "gin" / "t5x"
SIZES = ("small", "base", "large", "xl", "xxl")
PAPER_STEPS = {"small": 98_000, "base": 84_000, "large": 64_000, "xl": 38_000, "xxl": 14_000}


# ----------------------------------------------------------------- stand-ins (script side)


def _stub_modules() -> None:
    """Registers stand-in t5x modules in sys.modules (same names, same parameters)."""

    def module(name: str, **attrs: Any) -> types.ModuleType:
        mod = types.ModuleType(name)
        mod.__dict__.update(attrs)
        sys.modules[name] = mod
        return mod

    @dataclasses.dataclass
    class SaveCheckpointConfig:
        dtype: str
        period: int | None = None
        keep: int | None = None
        save_dataset: bool = False
        checkpointer_cls: Any = None
        state_transformation_fns: Any = ()

    @dataclasses.dataclass
    class RestoreCheckpointConfig:
        path: Any
        mode: str = "latest"
        assignment_map: Any = None
        strict: bool = True
        fallback_to_scratch: bool = False
        dtype: str | None = None
        restore_dataset: bool = False
        checkpointer_cls: Any = None
        state_transformation_fns: Any = ()

    @dataclasses.dataclass
    class CheckpointConfig:
        save: Any = None
        restore: Any = None

    @dataclasses.dataclass
    class DatasetConfig:
        mixture_or_task_name: str
        task_feature_lengths: Any
        split: str
        batch_size: int
        shuffle: bool
        seed: int | None
        use_cached: bool = False
        pack: bool = False
        use_custom_packing_ops: bool = False
        module: str | None = None
        use_memory_cache: bool = True

    def create_learning_rate_scheduler(factors="constant * linear_warmup * rsqrt_decay",
                                       base_learning_rate=0.5, warmup_steps=1000,
                                       decay_factor=0.5, steps_per_decay=20000,
                                       steps_per_cycle=100000, step_offset=0,
                                       min_learning_rate=1e-8):
        return {"factors": factors, "base_learning_rate": base_learning_rate}

    class PjitPartitioner:
        def __init__(self, num_partitions=None, model_parallel_submesh=None,
                     params_on_devices=True, backend=None, ici_mesh_shape=None,
                     dcn_mesh_shape=None, logical_axis_rules=None):
            self.num_partitions, self.logical_axis_rules = num_partitions, logical_axis_rules

    def standard_logical_axis_rules(activation_partitioning_dims=1,
                                    parameter_partitioning_dims=1, additional_rules=None):
        return (("batch", "data"), ("mlp", "model"))

    class Trainer:
        def __init__(self, model, train_state, partitioner, eval_names, summary_dir,
                     train_state_axes, rng, learning_rate_fn, num_microbatches,
                     log_weight_metrics=False):
            pass

    class Adafactor:
        def __init__(self, learning_rate=None, factored=True,
                     multiply_by_parameter_scale=True, beta1=None, decay_rate=0.8,
                     step_offset=0, clipping_threshold=1.0, weight_decay_rate=None,
                     min_dim_size_to_factor=128, epsilon1=1e-30, epsilon2=1e-3,
                     dtype_momentum="float32", factor_map=None, logical_factor_rules=None,
                     weight_decay_rate_lr_exponent=None, global_norm_clip_threshold=None,
                     max_parameter_scale=None, skip_nan_updates=False):
            self.hparams = dict(learning_rate=learning_rate, factored=factored,
                                multiply_by_parameter_scale=multiply_by_parameter_scale,
                                beta1=beta1, decay_rate=decay_rate,
                                clipping_threshold=clipping_threshold)

    def standard_logical_factor_rules():
        return {"embed": "row"}

    class EncoderDecoderModel:
        def __init__(self, module, input_vocabulary, output_vocabulary, optimizer_def,
                     decode_fn=None, feature_converter_cls=None, label_smoothing=0.0,
                     z_loss=0.0, loss_normalizing_factor=None, default_decoder_params=None):
            self.module, self.optimizer_def = module, optimizer_def
            self.input_vocabulary, self.output_vocabulary = input_vocabulary, output_vocabulary
            self.z_loss, self.label_smoothing = z_loss, label_smoothing
            self.loss_normalizing_factor = loss_normalizing_factor

    @dataclasses.dataclass
    class T5Config:
        vocab_size: int
        dtype: Any = "float32"
        emb_dim: int = 512
        num_heads: int = 8
        num_encoder_layers: int = 6
        num_decoder_layers: int = 6
        head_dim: int = 64
        mlp_dim: int = 2048
        mlp_activations: Any = ("relu",)
        dropout_rate: float = 0.1
        logits_via_embedding: bool = False
        float32_attention_logits: bool = False

    @dataclasses.dataclass
    class Transformer:  # a flax Module: its dataclass fields
        config: Any
        parent: Any = None
        name: str | None = None

    def summarize_gin_config(model_dir, summary_writer, step):
        pass

    t5x = module("t5x")
    t5x.utils = module("t5x.utils", SaveCheckpointConfig=SaveCheckpointConfig,
                       RestoreCheckpointConfig=RestoreCheckpointConfig,
                       CheckpointConfig=CheckpointConfig, DatasetConfig=DatasetConfig,
                       create_learning_rate_scheduler=create_learning_rate_scheduler)
    t5x.partitioning = module("t5x.partitioning", PjitPartitioner=PjitPartitioner,
                              standard_logical_axis_rules=standard_logical_axis_rules)
    t5x.trainer = module("t5x.trainer", Trainer=Trainer)
    t5x.adafactor = module("t5x.adafactor", Adafactor=Adafactor,
                           standard_logical_factor_rules=standard_logical_factor_rules)
    t5x.models = module("t5x.models", EncoderDecoderModel=EncoderDecoderModel)
    t5x.gin_utils = module("t5x.gin_utils", summarize_gin_config=summarize_gin_config)
    t5x.examples = module("t5x.examples")
    t5x.examples.t5 = module("t5x.examples.t5")
    t5x.examples.t5.network = module("t5x.examples.t5.network", T5Config=T5Config,
                                     Transformer=Transformer)


def train(*, model, train_dataset_cfg, train_eval_dataset_cfg, infer_eval_dataset_cfg,
          checkpoint_cfg, partitioner, trainer_cls, model_dir, total_steps, eval_steps,
          eval_period, stats_period=None, random_seed, use_hardware_rng=False,
          summarize_config_fn, inference_evaluator_cls=None, get_dataset_fn=None,
          concurrent_metrics=True, actions=None, train_eval_get_dataset_fn=None,
          run_eval_before_training=False, train_state_initializer_cls=None,
          use_orbax=False, verify_matching_vocabs_fn=None, gc_period=0):
    """Stand-in for t5x/train.py `train`: does what t5x does with the dataset config after
    gin is locked (import the task module, look the mixture up, compare its vocabulary with
    the model's, read a batch when the vocabulary needs no download) and returns a JSON
    summary of what it was given."""
    import seqio

    cfg = model.module.config
    _import_module(train_dataset_cfg.module)
    mixture = seqio.get_mixture_or_task(train_dataset_cfg.mixture_or_task_name)
    task_vocab = mixture.output_features["targets"].vocabulary
    batch = None
    if isinstance(task_vocab, seqio.ByteVocabulary):
        ds = seqio.get_dataset(
            train_dataset_cfg.mixture_or_task_name,
            task_feature_lengths=train_dataset_cfg.task_feature_lengths,
            dataset_split=train_dataset_cfg.split, shuffle=False,
            feature_converter=seqio.EncDecFeatureConverter(pack=train_dataset_cfg.pack))
        batch = {k: list(v.shape) for k, v in next(ds.batch(
            train_dataset_cfg.batch_size).as_numpy_iterator()).items()}
    return {
        "model_dir": model_dir, "total_steps": total_steps,
        "vocab": _vocab_name(model.input_vocabulary),
        "same_vocab": _vocab_name(model.output_vocabulary) == _vocab_name(model.input_vocabulary),
        "task_vocab": _vocab_name(task_vocab), "batch": batch,
        "optimizer": model.optimizer_def.hparams, "z_loss": model.z_loss,
        "network": {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(cfg).items()},
        "train": dataclasses.asdict(train_dataset_cfg),
        "train_eval": dataclasses.asdict(train_eval_dataset_cfg),
        "infer_eval": infer_eval_dataset_cfg,
        "restore": checkpoint_cfg.restore.path, "restore_mode": checkpoint_cfg.restore.mode,
        "save_period": checkpoint_cfg.save.period,
        "num_partitions": partitioner.num_partitions, "trainer": trainer_cls.__name__,
    }


def _import_module(module: str) -> None:
    """t5x/utils.py `import_module`, run after gin is locked (same error translation)."""
    import importlib

    try:
        importlib.import_module(module)
    except RuntimeError as e:
        if str(e) == "Attempted to add a new configurable after the config was locked.":
            raise RuntimeError("Your Task/Mixture module contains gin configurables that must "
                               "be loaded before gin flag parsing.") from e
        raise


def _vocab_name(vocabulary: Any) -> str:
    """What t5x's vocabulary check compares, without reading a gs:// file."""
    return getattr(vocabulary, "sentencepiece_model_file", type(vocabulary).__name__)


def _script_main(argv: list[str]) -> None:
    import gin

    _stub_modules()
    if argv == ["--lock-then-import"]:  # a user's own gin file that never names flan_jax
        gin.parse_config("MODEL_DIR = '/tmp/x'")
        gin.finalize()
        _import_module("flan_jax.catalog")
        print("RESULT {}", flush=True)
        return
    train_using_gin = gin.configurable(train)  # as t5x/train.py's main does
    scheduler = gin.configurable(sys.modules["t5x.utils"].create_learning_rate_scheduler)
    runs = [[]]
    for arg in argv:  # "::" separates independent runs (one process, fewer imports)
        if arg == "::":
            runs.append([])
        else:
            runs[-1].append(arg)
    for run in runs:
        gin.clear_config()  # also unlocks the config finalized by the previous run
        files = [a for a in run if a.endswith(".gin")]
        bindings = [a for a in run if not a.endswith(".gin")]
        gin.parse_config_files_and_bindings(files, bindings)  # finalizes, as t5x does
        result = train_using_gin()
        result["learning_rate"] = scheduler()
        print("RESULT " + json.dumps(result), flush=True)


# ----------------------------------------------------------------- tests (pytest side)


def _run(*args: str) -> subprocess.CompletedProcess:
    # A script's sys.path starts at tests/: put this checkout's flan_jax first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300, env=env)


def _parse_all(*args: str) -> list[dict]:
    proc = _run(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(x[len("RESULT "):]) for x in proc.stdout.splitlines()
            if x.startswith("RESULT ")]


def _parse(*args: str) -> dict:
    return _parse_all(*args)[0]


REQUIRED = ("MODEL_DIR='/tmp/flan_t5'", "MIXTURE_OR_TASK_NAME='demo_submix'")
SPM_T5 = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"


def test_finetune_flan_has_the_paper_recipe():
    r = _parse(str(GIN_DIR / "finetune_flan.gin"), *REQUIRED)
    assert r["optimizer"]["decay_rate"] == 0.8 and r["optimizer"]["clipping_threshold"] == 1.0
    assert r["optimizer"]["factored"] and r["optimizer"]["multiply_by_parameter_scale"]
    assert r["optimizer"]["beta1"] is None
    assert r["learning_rate"] == {"factors": "constant", "base_learning_rate": 5e-4}
    assert r["z_loss"] == 1e-4 and r["trainer"] == "Trainer"
    assert r["network"]["dropout_rate"] == 0.05 and r["network"]["dtype"] == "bfloat16"
    assert r["network"]["mlp_activations"] == ["gelu", "linear"]
    assert not r["network"]["logits_via_embedding"]
    train_cfg = r["train"]
    assert train_cfg["batch_size"] == 64 and train_cfg["pack"] and train_cfg["shuffle"]
    assert train_cfg["task_feature_lengths"] == {"inputs": 2048, "targets": 512}
    assert train_cfg["module"] == "flan_jax.catalog" and train_cfg["split"] == "train"
    assert train_cfg["mixture_or_task_name"] == "demo_submix"
    assert r["train_eval"]["split"] == "validation"
    assert r["model_dir"] == "/tmp/flan_t5" and r["same_vocab"]
    assert r["total_steps"] == 1_100_000 + PAPER_STEPS["small"]
    assert r["restore"].endswith("t5_1_1_lm100k_small/checkpoint_1100000")
    assert r["restore_mode"] == "specific"
    # t5x's order of events: flan_jax.catalog imported after gin was locked, its tasks
    # tokenized with the model's vocabulary (not $FLAN_JAX_VOCAB, which the tests set).
    assert r["task_vocab"] == r["vocab"] == SPM_T5


def test_tiny_offline_size_with_the_byte_vocabulary_reads_a_batch():
    r = _parse(str(GIN_DIR / "finetune_flan.gin"), str(GIN_DIR / "flan_t5_tiny.gin"),
               str(GIN_DIR / "byte_vocab.gin"), *REQUIRED)
    net = r["network"]
    # The shape of the checkpoint the real t5x wrote with these files (fixture README).
    assert (net["vocab_size"], net["emb_dim"], net["num_heads"], net["head_dim"]) == (384, 32, 4, 8)
    assert (net["num_encoder_layers"], net["num_decoder_layers"], net["mlp_dim"]) == (2, 2, 64)
    assert net["dtype"] == "float32" and r["restore"] is None
    assert r["vocab"] == r["task_vocab"] == "ByteVocabulary" and r["same_vocab"]
    assert r["batch"]["encoder_input_tokens"] == [8, 256]
    assert r["batch"]["decoder_target_tokens"] == [8, 64]
    assert r["total_steps"] % r["save_period"] == 0


def test_catalog_imports_after_gin_is_locked():
    """A t5x gin file that never imports flan_jax: t5x locks gin, then imports the module."""
    proc = _run("--lock-then-import")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_size_matches_flan_jax_model_dimensions():
    from flan_jax.models.config import get_config

    args = []
    for size in SIZES:
        args += [str(GIN_DIR / "finetune_flan.gin"), str(GIN_DIR / f"flan_t5_{size}.gin"),
                 *REQUIRED, "::"]
    results = _parse_all(*args[:-1])
    assert len(results) == len(SIZES)
    for size, r in zip(SIZES, results, strict=True):
        cfg, net = get_config(size), r["network"]
        assert (net["emb_dim"], net["mlp_dim"], net["num_heads"], net["head_dim"]) == \
            (cfg.d_model, cfg.d_ff, cfg.num_heads, cfg.d_kv), size
        assert (net["num_encoder_layers"], net["num_decoder_layers"], net["vocab_size"]) == \
            (cfg.num_layers, cfg.num_decoder_layers, cfg.vocab_size), size
        assert r["total_steps"] == 1_100_000 + PAPER_STEPS[size]
        assert f"t5_1_1_lm100k_{size}/" in r["restore"]


def test_a_typo_is_caught():
    proc = _run(str(GIN_DIR / "finetune_flan.gin"), *REQUIRED,
                "train/utils.DatasetConfig.packing = True")
    assert proc.returncode != 0 and "packing" in proc.stderr
    proc = _run(str(GIN_DIR / "finetune_flan.gin"), *REQUIRED, "adafactor.Adafactor.clip = 1.0")
    assert proc.returncode != 0 and "clip" in proc.stderr
    proc = _run(str(GIN_DIR / "finetune_flan.gin"))  # required macros missing
    assert proc.returncode != 0 and "MODEL_DIR" in proc.stderr


def test_mixture_module_registers_the_named_mixture():
    import importlib

    import seqio

    importlib.import_module("flan_jax.catalog")  # MIXTURE_OR_TASK_MODULE
    assert seqio.get_mixture_or_task("demo_submix").name == "demo_submix"


if __name__ == "__main__":
    _script_main(sys.argv[1:])
