"""Mixing rates, caps, nesting, counts and missing-data handling."""

import shutil
import textwrap

import pytest
import seqio

from flan_jax.data import mixing
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.errors import MissingDataError

from conftest import FIXTURES


@pytest.fixture(scope="module")
def toy():
    return register_catalog(load_catalog([FIXTURES / "toy"]))


def test_examples_proportional_with_cap(toy):
    shares = mixing.shares(toy, "toy_mix", mixing.example_count)
    # add: 40 declared -> capped at 30; capital: 10 measured; antonym: 6 measured (x2 styles)
    total = 2 * (30 + 10 + 6)
    assert shares == pytest.approx({
        "toy_add_zs_noopt": 30 / total, "toy_add_fs_noopt": 30 / total,
        "toy_capital_zs_noopt": 10 / total, "toy_capital_fs_noopt": 10 / total,
        "toy_antonym_zs_noopt": 6 / total, "toy_antonym_fs_noopt": 6 / total})


def test_nested_weights(toy):
    shares = mixing.shares(toy, "toy_nested", mixing.example_count)
    assert shares["toy_add_zs_opt"] == pytest.approx(1 / 3 * 1 / 2)
    assert shares["toy_capital_fs_noopt"] == pytest.approx(2 / 3 * 10 / 92)
    assert sum(shares.values()) == pytest.approx(1)
    mixture = seqio.get_mixture_or_task("toy_nested")
    assert {t.name for t in mixture.tasks} == set(shares)
    assert mixture.get_rate(seqio.get_mixture_or_task("toy_add_zs_opt")) == pytest.approx(1 / 6)


def test_measured_counts_are_cached(toy, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURES / "toy", data_dir)
    catalog = load_catalog([data_dir])
    register_catalog(catalog)
    assert mixing.example_count("toy_capital_zs_noopt") == 10
    cache = (tmp_path / "cache" / "counts.json").read_text()
    assert "toy_capital" in cache
    monkeypatch.setattr(type(seqio.get_mixture_or_task("toy_capital_zs_noopt").source.data.source),
                        "iter_split", lambda *a, **k: pytest.fail("count was not cached"))
    assert mixing.example_count("toy_capital_fs_noopt") == 10


MISSING_CATALOG = """
defaults:
  collection: partial
tasks:
  - name: present
    num_examples: {train: 3}
    source: {generated: "flan_jax.data.demo.generators:arithmetic", splits: {train: 3}}
    parser: {fields: [question, answer]}
    templates: {noopt: [{input: "{question}", target: "{answer}"}]}
  - name: gone_a
    num_examples: {train: 5}
    source: {files: jsonl, splits: {train: nowhere_a.jsonl}, data_dir_env: PARTIAL_DIR}
    parser: {fields: [q]}
    templates: {noopt: [{input: "{q}", target: "{q}"}]}
  - name: gone_b
    num_examples: {train: 5}
    source: {files: jsonl, splits: {train: nowhere_b.jsonl}}
    parser: {fields: [q]}
    templates: {noopt: [{input: "{q}", target: "{q}"}]}
mixtures:
  - {name: partial_mix, collections: [partial]}
"""


@pytest.fixture
def partial(tmp_path):
    (tmp_path / "partial.yaml").write_text(textwrap.dedent(MISSING_CATALOG))
    return register_catalog(load_catalog([tmp_path]))


def test_missing_tasks_are_all_listed(partial, monkeypatch):
    monkeypatch.delenv(mixing.DROP_MISSING_ENV, raising=False)
    mixture = seqio.get_mixture_or_task("partial_mix")
    with pytest.raises(MissingDataError) as info:
        mixture.get_dataset({"inputs": 64, "targets": 64}, split="train")
    assert set(info.value.missing) == {"gone_a_zs_noopt", "gone_b_zs_noopt"}
    assert "nowhere_a.jsonl" in str(info.value) and "$PARTIAL_DIR" in str(info.value)
    assert mixing.DROP_MISSING_ENV in str(info.value)


def test_dropping_missing_tasks_renormalises(partial, monkeypatch):
    mixture = seqio.get_mixture_or_task("partial_mix")
    assert mixture.shares()["present_zs_noopt"] == pytest.approx(3 / 13)
    kept = mixture.without_missing()
    assert kept.shares() == {"present_zs_noopt": 1.0}
    monkeypatch.setenv(mixing.DROP_MISSING_ENV, "1")
    ds = mixture.get_dataset({"inputs": 256, "targets": 64}, split="train", shuffle=False,
                             num_epochs=1)
    assert len(list(ds.as_numpy_iterator())) == 3


def test_plain_seqio_task_joins_a_yaml_mixture(tmp_path):
    import tensorflow as tf

    from flan_jax.data.vocab import get_vocabulary

    def dataset_fn(split, shuffle_files, seed=None):
        return tf.data.Dataset.from_tensor_slices(
            {"inputs": ["hello", "world", "again", "more"], "targets": ["a", "b", "c", "d"]})

    features = {k: seqio.Feature(get_vocabulary(), add_eos=True) for k in ("inputs", "targets")}
    if "python_task" in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove("python_task")
    seqio.TaskRegistry.add(
        "python_task", seqio.FunctionDataSource(dataset_fn, splits=["train"],
                                                num_input_examples={"train": 4}),
        output_features=features, preprocessors=[seqio.preprocessors.tokenize,
                                                 seqio.preprocessors.append_eos])
    (tmp_path / "mix.yaml").write_text(textwrap.dedent(MISSING_CATALOG).split("mixtures:")[0] +
                                       "mixtures:\n  - {name: with_python, "
                                       "tasks: [python_task, present_zs_noopt]}\n")
    catalog = register_catalog(load_catalog([tmp_path]))
    assert mixing.shares(catalog, "with_python", mixing.example_count) == pytest.approx(
        {"python_task": 4 / 7, "present_zs_noopt": 3 / 7})
    ds = seqio.get_mixture_or_task("with_python").get_dataset(
        {"inputs": 256, "targets": 64}, split="train", shuffle=False, seed=0, num_epochs=None)
    vocab = get_vocabulary()
    drawn = [vocab.decode(ex["inputs"].tolist()) for ex in ds.take(700).as_numpy_iterator()]
    from_python = sum(text.rstrip("\x01") in ("hello", "world", "again", "more") for text in drawn)
    assert from_python / len(drawn) == pytest.approx(4 / 7, abs=0.07)
