"""Rendering through the real seqio pipeline on the files-backed toy catalog."""

import json
import re

import pytest
import seqio

from flan_jax.data import bad_rows
from flan_jax.data.datasource import FlanDataSource
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.data.templates import Renderer

from conftest import FIXTURES

LENGTHS = {"inputs": 512, "targets": 16}


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog([FIXTURES / "toy"]))


def dataset_rows(name, split="train", **kwargs):
    task = seqio.get_mixture_or_task(name)
    ds = task.get_dataset(LENGTHS, split=split, shuffle=False, **kwargs)
    return list(ds.as_numpy_iterator())


def raw_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_style_is_a_seqio_task(catalog):
    names = set(seqio.TaskRegistry.names())
    for spec in catalog.tasks.values():
        for style in spec.styles:
            assert spec.task_name(style) in names
    assert set(catalog.tasks["toy_add"].styles) == {"zs_opt", "zs_noopt", "fs_opt", "fs_noopt"}


def test_no_example_dropped_and_metadata_present(catalog):
    raw = raw_rows(FIXTURES / "toy" / "add_train.jsonl")
    for style in ("zs_opt", "fs_noopt"):
        rows = dataset_rows(f"toy_add_{style}")
        assert [r["_example_index"] for r in rows] == list(range(len(raw)))
        for row, ex in zip(rows, raw):
            assert row["_task_name"].decode() == f"toy_add_{style}"
            assert row["_template_type"].decode() == style
            assert b"add_train.jsonl" in row["_task_source"]
            n_templates = len(catalog.tasks["toy_add"].templates[style.split("_")[1]])
            assert 0 <= row["_template_idx"] < n_templates
            assert f"{ex['x']}" in row["inputs_pretokenized"].decode()
            assert row["targets"][-1] == 1  # EOS appended


def test_answers_match_labels(catalog):
    raw = raw_rows(FIXTURES / "toy" / "add_train.jsonl")
    rows = dataset_rows("toy_add_zs_noopt")
    for row, ex in zip(rows, raw):
        assert row["targets_pretokenized"].decode() == ex["choices"][ex["label"]]


def test_target_as_label_names_the_gold_option(catalog):
    rows = dataset_rows("toy_add_zs_opt")
    raw = raw_rows(FIXTURES / "toy" / "add_train.jsonl")
    labelled = 0
    for row, ex in zip(rows, raw):
        target = row["targets_pretokenized"].decode()
        gold = ex["choices"][ex["label"]]
        if target != gold:
            labelled += 1
            pattern = re.escape(target) + r"\.? " + re.escape(gold) + r"(\s|$)"
            assert re.search(pattern, row["inputs_pretokenized"].decode()), (target, gold)
    assert 0 < labelled < len(rows)


def test_deterministic_and_seed_dependent(catalog):
    first = dataset_rows("toy_add_fs_opt")
    again = dataset_rows("toy_add_fs_opt")
    assert [r["inputs_pretokenized"] for r in first] == [r["inputs_pretokenized"] for r in again]
    task = seqio.get_mixture_or_task("toy_add_fs_opt")
    other = FlanDataSource(task.source.data, "fs_opt", task.output_features["inputs"].vocabulary,
                           seed=123)
    reseeded = [r["inputs"] for r in other.rendered("train")]
    assert reseeded != [r["inputs_pretokenized"].decode() for r in first]


def test_epochs_render_differently_but_reproducibly(catalog):
    source = seqio.get_mixture_or_task("toy_add_zs_opt").source
    epoch0 = [r["inputs"] for r in source.rendered("train", epoch=0)]
    epoch1 = [r["inputs"] for r in source.rendered("train", epoch=1)]
    assert epoch0 != epoch1
    assert epoch1 == [r["inputs"] for r in source.rendered("train", epoch=1)]


def test_few_shot_never_uses_the_query(catalog):
    raw = raw_rows(FIXTURES / "toy" / "add_train.jsonl")
    for row, ex in zip(dataset_rows("toy_add_fs_noopt"), raw):
        prompt = row["inputs_pretokenized"].decode()
        question = next(q for q in (f"What is {ex['x']} plus {ex['y']}?",
                                    f"Compute {ex['x']} + {ex['y']}.") if q in prompt)
        assert prompt.count(question) == 1, prompt
        assert prompt.rstrip().endswith(("A:", "Answer:"))


def test_sharding_partitions_examples(catalog):
    task = seqio.get_mixture_or_task("toy_add_fs_opt")
    full = {r["_example_index"]: r["inputs"] for r in dataset_rows("toy_add_fs_opt")}
    seen = {}
    for index in range(3):
        ds = task.get_dataset(LENGTHS, split="train", shuffle=False,
                              shard_info=seqio.ShardInfo(index=index, num_shards=3))
        for r in ds.as_numpy_iterator():
            seen[r["_example_index"]] = r["inputs"]
    assert sorted(seen) == sorted(full)
    assert all((seen[i] == full[i]).all() for i in full)


def test_budget_prunes_exemplars_with_the_vocabulary(catalog):
    spec = catalog.tasks["toy_add"]
    vocab = seqio.ByteVocabulary()
    data = seqio.get_mixture_or_task("toy_add_fs_noopt").source.data
    fields = next(data.examples("validation"))[1]

    def prompt(budget):
        tight = spec.__class__(**{**spec.__dict__, "few_shot": spec.few_shot.__class__(
            **{**spec.few_shot.__dict__, "budget": budget})})
        renderer = Renderer(tight, "fs_noopt", token_length=lambda t: len(vocab.encode(t)))
        return renderer.render(fields, index=0, pool=data.pool).inputs

    full, pruned, none = prompt(10_000), prompt(60), prompt(1)
    assert len(vocab.encode(pruned)) <= 60 < len(vocab.encode(full))
    assert full.endswith(pruned)
    assert none.count("plus") + none.count("+") == 1  # only the query is left


def test_files_of_each_format(catalog):
    rows = dataset_rows("toy_capital_zs_noopt", split="test")
    assert [r["targets_pretokenized"].decode() for r in rows] == ["Madrid", "Accra", "Havana"]
    inv = dataset_rows("toy_capital_zs_inv", split="test")
    assert inv[0]["inputs_pretokenized"].decode() == "Madrid is the capital of which country?"
    antonyms = dataset_rows("toy_antonym_zs_noopt")
    assert antonyms[2]["inputs_pretokenized"].decode() == 'Give the opposite of "big, very".'
    validation = dataset_rows("toy_add_zs_noopt", split="validation")
    assert len(validation) == 10  # gzip JSONL


def test_malformed_row_is_skipped_counted_and_named(tmp_path, monkeypatch):
    import shutil

    from flan_jax.errors import DataFormatError

    shutil.copytree(FIXTURES / "toy", tmp_path / "toy")
    path = tmp_path / "toy" / "add_train.jsonl"
    lines = path.read_text().splitlines()
    lines[3] = json.dumps({"x": 1, "y": 2, "choices": ["3"], "label": 5})
    path.write_text("\n".join(lines) + "\n")
    register_catalog(load_catalog([tmp_path / "toy"]))
    data = seqio.get_mixture_or_task("toy_add_zs_opt").source.data
    # 1 of 40 rows is within the 5% limit: skipped and counted, later indices unchanged.
    assert [i for i, _ in data.examples("train")] == [i for i in range(40) if i != 3]
    report = next(r for r in bad_rows.reports() if r.task == "toy_add")
    assert (report.rows, report.malformed) == (40, 1)
    assert "add_train.jsonl line 4: label 5 in field 'label' is not an index" in report.problems[0]
    monkeypatch.setenv("FLAN_JAX_MAX_MALFORMED", "0")
    with pytest.raises(DataFormatError, match=r"task 'toy_add' .*split 'train': 1 of the 40 "
                                              r"rows .*add_train.jsonl line 4: label 5 .*not an "
                                              r"index"):
        list(data.examples("train"))
    lines[3] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"add_train.jsonl line 4: malformed JSON"):
        list(data.examples("train"))


def test_json_records_with_first_exemplars_from_dev(catalog):
    rows = dataset_rows("toy_json_eval_fs_noopt", split="test")
    assert [r["targets_pretokenized"].decode() for r in rows] == ["honey", "7"]
    for row, question in zip(rows, ["What do bees make?", "How many days are in a week?"]):
        assert row["inputs_pretokenized"].decode() == (
            "Q: What colour is a ripe banana?\nA: yellow\n\n"
            "Q: How many legs does a spider have?\nA: 8\n\n"
            f"Q: {question}\nA:")
    dev = dataset_rows("toy_json_eval_fs_noopt", split="dev")
    assert dev[0]["inputs_pretokenized"].decode() == (  # the query is skipped, not reused
        "Q: How many legs does a spider have?\nA: 8\n\n"
        "Q: Which is heavier, a kilogram of iron or a gram of iron?\nA: a kilogram of iron\n\n"
        "Q: What colour is a ripe banana?\nA:")


def test_budget_cap_from_the_environment_keeps_the_query(monkeypatch):
    """$FLAN_JAX_FEW_SHOT_BUDGET (set by the trainer to its input length) caps every
    task's budget, so a few-shot prompt fits the inputs instead of losing its query."""
    monkeypatch.setenv("FLAN_JAX_FEW_SHOT_BUDGET", "48")
    try:
        register_catalog(load_catalog([FIXTURES / "toy"]))
        rows = dataset_rows("toy_add_fs_noopt")
    finally:
        monkeypatch.delenv("FLAN_JAX_FEW_SHOT_BUDGET")
        register_catalog(load_catalog([FIXTURES / "toy"]))
    assert rows
    for row in rows:
        prompt = row["inputs_pretokenized"].decode()
        assert len(seqio.ByteVocabulary().encode(prompt)) <= 48, prompt
        assert prompt.rstrip().endswith(("A:", "Answer:"))
    uncapped = [r["inputs_pretokenized"].decode() for r in dataset_rows("toy_add_fs_noopt")]
    assert max(len(p) for p in uncapped) > 48


def test_bad_budget_cap_is_a_clear_error(monkeypatch):
    from flan_jax.errors import CatalogError
    monkeypatch.setenv("FLAN_JAX_FEW_SHOT_BUDGET", "lots")
    with pytest.raises(CatalogError, match="FLAN_JAX_FEW_SHOT_BUDGET"):
        register_catalog(load_catalog([FIXTURES / "toy"]))
