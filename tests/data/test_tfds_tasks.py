"""YAML tasks over real TFDS builders, run under tfds.testing.mock_data."""

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax.data import mixing
from flan_jax.data.registry import load_catalog, register_catalog

from conftest import FIXTURES

NUM_EXAMPLES = 6
LENGTHS = {"inputs": 1024, "targets": 64}


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog([FIXTURES / "tfds_catalog"]))


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_every_style_of_every_builder_renders(catalog, mock_tfds):
    for name, (_, style) in catalog.task_styles().items():
        task = seqio.get_mixture_or_task(name)
        rows = list(task.get_dataset(LENGTHS, split="validation", shuffle=False).as_numpy_iterator())
        assert len(rows) == NUM_EXAMPLES, name
        for row in rows:
            assert row["_task_name"].decode() == name
            assert row["inputs"].size > 1 and row["targets"][-1] == 1
            if style.startswith("fs"):
                pattern_prefixes = ("Input: ", "")
                assert row["inputs_pretokenized"].decode().startswith(pattern_prefixes)


def test_label_and_list_fields_are_parsed(catalog, mock_tfds):
    builder = tfds.builder("squad/v1.1:3.0.0")
    raw = list(tfds.as_numpy(builder.as_dataset(split="validation", shuffle_files=False)))
    task = seqio.get_mixture_or_task("fx_squad_zs_noopt")
    rows = list(task.get_dataset(LENGTHS, split="validation", shuffle=False).as_numpy_iterator())
    for row, ex in zip(rows, raw):
        assert row["targets_pretokenized"] == ex["answers"]["text"][0]
        assert ex["question"].decode() in row["inputs_pretokenized"].decode()

    rte = list(tfds.as_numpy(tfds.builder("super_glue/rte:1.0.2").as_dataset(
        split="validation", shuffle_files=False)))
    rows = list(seqio.get_mixture_or_task("fx_rte_zs_noopt").get_dataset(
        LENGTHS, split="validation", shuffle=False).as_numpy_iterator())
    assert [r["targets_pretokenized"].decode() for r in rows] == [
        ["yes", "no"][ex["label"]] for ex in rte]


def test_mixture_packs_through_the_feature_converter(catalog, mock_tfds):
    ds = seqio.get_dataset("fx_all", LENGTHS, dataset_split="train", shuffle=True, seed=3,
                           num_epochs=1, feature_converter=seqio.EncDecFeatureConverter(pack=True))
    batches = list(ds.take(4).as_numpy_iterator())
    assert batches
    for ex in batches:
        assert ex["encoder_input_tokens"].shape == (LENGTHS["inputs"],)
        assert ex["decoder_target_tokens"].shape == (LENGTHS["targets"],)
        assert ex["encoder_segment_ids"].max() >= 1
    assert any(ex["encoder_segment_ids"].max() > 1 for ex in batches)  # really packed


def test_mixture_rates_from_measured_counts(catalog, mock_tfds):
    shares = mixing.shares(catalog, "fx_all", mixing.example_count)
    nli = [n for n in catalog.task_styles() if n.startswith(("fx_rte", "fx_mnli", "fx_anli"))
           and n.endswith(("zs_opt", "fs_opt"))]
    qa = [n for n in catalog.task_styles() if n.startswith("fx_squad")]
    for name in nli:
        assert shares[name] == pytest.approx(0.75 / len(nli))
    for name in qa:
        assert shares[name] == pytest.approx(0.25 / len(qa))
    assert sum(shares.values()) == pytest.approx(1.0)


def test_unprepared_builder_is_reported_by_name(catalog):
    missing = mixing.find_missing([seqio.get_mixture_or_task("fx_rte_zs_opt")], "train")
    assert "fx_rte_zs_opt" in missing and "super_glue/rte:1.0.2" in missing["fx_rte_zs_opt"]
    assert np.all([isinstance(v, str) for v in missing.values()])
