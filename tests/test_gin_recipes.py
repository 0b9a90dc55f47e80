"""The run files in gin/runs parse as the trainer parses them, and set what their headers say."""

import gin
import pytest

from conftest import REPO


@pytest.fixture
def parse():
    from flan_jax import catalog, train  # noqa: F401
    from flan_jax.data import vocab  # noqa: F401
    from flan_jax.training import optimizers, partitioning  # noqa: F401

    train.register()
    train.add_gin_search_paths()

    def parse(*files: str, bindings: tuple[str, ...] = ()) -> None:
        gin.clear_config()
        gin.parse_config_files_and_bindings([str(REPO / "gin" / f) for f in files],
                                            list(bindings), finalize_config=False)

    yield parse
    gin.clear_config()


def test_cpu_recipe_is_a_short_first_run(parse):
    parse("models/flan_t5_small.gin", "runs/finetune_cpu.gin",
          bindings=("MODEL_DIR = '/tmp/x'", "MIXTURE_OR_TASK_NAME = 'demo_submix'"))
    assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 256, "targets": 64}
    assert gin.query_parameter("%BATCH_SIZE") == 8
    assert gin.query_parameter("train.checkpoint_period") == 100
    assert gin.query_parameter("%EVAL_PERIOD") == 100
    assert gin.query_parameter("%TRAIN_STEPS") == 300
    # Everything else is finetune.gin's: the t5x Adafactor settings.
    assert gin.query_parameter("optimizers.make_optimizer.decay_rate") == 0.8
    assert gin.query_parameter("t5.T5Config.d_model") == 512  # Flan-T5 small


def test_paper_recipe_keeps_the_paper_lengths(parse):
    parse("runs/flan_t5_base_paper.gin",
          bindings=("MODEL_DIR = '/tmp/x'", "MIXTURE_OR_TASK_NAME = 'demo_submix'"))
    assert gin.query_parameter("%TASK_FEATURE_LENGTHS") == {"inputs": 2048, "targets": 512}
    assert gin.query_parameter("%BATCH_SIZE") == 64
