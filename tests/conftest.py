"""Shared test set-up: a byte vocabulary, quiet TensorFlow, a private count cache, fresh
skipped-row counts, and the tiny training run of the trainer tests (its gin file and
subprocess environment)."""

import os
from pathlib import Path

os.environ.setdefault("FLAN_JAX_VOCAB", "byte")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("FLAN_JAX_COMPILATION_CACHE", "")  # tests compile afresh

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parent.parent

# gin/models/flan_t5_tiny.gin as it is (its vocab_size must hold the byte vocabulary) on one
# demo task: 6 steps, checkpoints at 3 and 6.
TINY_GIN = """
include 'models/flan_t5_tiny.gin'
include 'runs/finetune.gin'
MIXTURE_OR_TASK_NAME = 'demo_comparison_zs_opt'
TASK_FEATURE_LENGTHS = {'inputs': 64, 'targets': 16}
TRAIN_STEPS = 6
BATCH_SIZE = 8
EVAL_PERIOD = 3
EVAL_STEPS = 1
DROPOUT_RATE = 0.1
LEARNING_RATE = 0.01
train.vocabulary = 'byte'
train.checkpoint_period = 3
train.log_period = 1
train.shuffle_buffer_size = 16
train.peak_flops = 1e9
train.progress_bar = False
train.plot = False
train.truncation_sample_size = 32
"""


def train_env(compilation_cache: Path | None = None) -> dict[str, str]:
    """The environment of a trainer subprocess: CPU, byte vocabulary, one device; with
    `compilation_cache`, compiled steps are kept there and reused by later runs."""
    env = dict(os.environ, FLAN_JAX_VOCAB="byte", TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    if compilation_cache is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(compilation_cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


@pytest.fixture(autouse=True)
def _count_cache(tmp_path, monkeypatch):
    from flan_jax.data import bad_rows

    monkeypatch.setenv("FLAN_JAX_CACHE_DIR", str(tmp_path / "cache"))
    bad_rows.reset()


@pytest.fixture(scope="session")
def demo_spm(tmp_path_factory) -> Path:
    """A small demo SentencePiece model (`flan_jax.data.demo.vocab`, 512 pieces), trained
    once per session into a private cache."""
    from flan_jax.data.demo.vocab import demo_vocabulary

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLAN_JAX_CACHE_DIR", str(tmp_path_factory.mktemp("demo_spm")))
        return Path(demo_vocabulary(size=512, examples_per_task=20))
