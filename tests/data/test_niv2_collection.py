"""The NIv2 collection (tasks/niv2) on task files in the allenai/natural-instructions layout."""

import builtins
import dataclasses
import json
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import seqio

from flan_jax import tasks
from flan_jax.data import mixing
from flan_jax.data.collections import niv2
from flan_jax.data.datasource import FlanDataSource, TaskData
from flan_jax.data.registry import CATALOG_DIR, load_catalog, register_catalog
from flan_jax.data.templates import OPTION_HEADERS
from flan_jax.errors import (
    CatalogError,
    DataFormatError,
    EmptyFieldError,
    FlanJaxError,
    MissingDataError,
)

from conftest import FIXTURES

NIV2_TASKS = CATALOG_DIR / "niv2"
NIV2_DATA = FIXTURES / "niv2"
ENV = niv2.ENV
LENGTHS = {"inputs": 2048, "targets": 512}
STYLES = ("zs_opt", "fs_opt")
# Fixture files and their number of Instances; task700 is MMLU-derived and left out.
FILES = {"task001_toy_review_sentiment_classification": 6,
         "task002_toy_story_question_generation": 5,
         "task003_toy_english_to_spanish_translation": 4}
MMLU_FILE = "task700_mmlu_answer_generation_toy_astronomy"
SENTIMENT, QGEN, TRANSLATION = (f"niv2_{stem}" for stem in FILES)


@pytest.fixture(autouse=True)
def niv2_dir(monkeypatch):
    monkeypatch.setenv(ENV, str(NIV2_DATA))
    monkeypatch.delenv(niv2.TASK_LIST_ENV, raising=False)
    monkeypatch.delenv(mixing.DROP_MISSING_ENV, raising=False)


@pytest.fixture(scope="module")
def catalog():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(NIV2_DATA))
        mp.delenv(niv2.TASK_LIST_ENV, raising=False)
        return register_catalog(load_catalog([NIV2_TASKS]))


@pytest.fixture(scope="module")
def rendered(catalog):
    """Every NIv2 seqio task's train split through the seqio pipeline, rendered once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(NIV2_DATA))
        return {spec.task_name(style): dataset_rows(spec.task_name(style))
                for spec in catalog.tasks.values() for style in spec.styles}


def dataset_rows(name):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split="train", shuffle=False)
    return [{k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()}
            for row in ds.as_numpy_iterator()]


def raw(stem, root=NIV2_DATA):
    return json.loads((root / "tasks" / f"{stem}.json").read_text(encoding="utf-8"))


def definition(stem):
    return "\n".join(raw(stem)["Definition"])


def test_fixtures_have_the_natural_instructions_layout():
    keys = {"Contributors", "Source", "URL", "Categories", "Reasoning", "Definition",
            "Input_language", "Output_language", "Instruction_language", "Domains",
            "Positive Examples", "Negative Examples", "Instances", "Instance License"}
    for stem, n in {**FILES, MMLU_FILE: 2}.items():
        data = raw(stem)
        assert set(data) == keys, stem
        assert all(isinstance(s, str) for s in data["Definition"])
        assert len(data["Instances"]) == n
        for inst in data["Instances"]:
            assert set(inst) == {"id", "input", "output"} and isinstance(inst["output"], list)
        for ex in data["Positive Examples"] + data["Negative Examples"]:
            assert set(ex) == {"input", "output", "explanation"} and isinstance(ex["output"], str)
    assert int(MMLU_FILE[4:7]) in niv2.MMLU_TASK_IDS


def test_discovery_names_tasks_and_leaves_out_mmlu(catalog):
    assert list(catalog.tasks) == [f"niv2_{stem}" for stem in FILES]
    assert not any("mmlu" in name for name in catalog.tasks)
    assert len(niv2.MMLU_TASK_IDS) == 57
    assert niv2.MMLU_TASK_IDS == {*range(664, 668), *range(685, 738)}
    for stem, (name, spec) in zip(FILES, catalog.tasks.items()):
        assert name == spec.name == f"niv2_{stem}"
        assert spec.collection == "niv2" and spec.styles == STYLES
        assert spec.source.kind == "reader" and spec.source.reader == niv2.READER
        assert spec.source.name == f"tasks/{stem}.json" and spec.source.data_dir_env == ENV
        assert spec.source.splits == {"train": "Instances", "exemplars": "Positive Examples"}
        assert spec.few_shot.split == "exemplars" and spec.metrics == ("accuracy", "rouge")
    assert niv2.task_name("task1448_Some-Odd name") == "niv2_task1448_some_odd_name"


def test_registering_reads_no_data(monkeypatch):
    opened = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if str(NIV2_DATA / "tasks") in str(Path(file).resolve()):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(niv2, "read_task_file", lambda path: pytest.fail(f"read {path}"))
    catalog = register_catalog(load_catalog([NIV2_TASKS]))
    assert len(catalog.task_styles()) == 2 * len(FILES) and opened == []


def test_discovery_of_the_full_collection_lists_names_only(tmp_path, monkeypatch):
    """1,611 task ids minus the 57 MMLU-derived ones: Flan 2022's 1,554 NIv2 tasks. The
    files are empty, so any attempt to read one would fail."""
    (tmp_path / "tasks").mkdir()
    for i in range(1, 1612):
        (tmp_path / "tasks" / f"task{i}_synthetic_{i}.json").touch()
    (tmp_path / "tasks" / "README.md").touch()
    monkeypatch.setenv(ENV, str(tmp_path))
    catalog = load_catalog([NIV2_TASKS])
    assert len(catalog.tasks) == 1554 and len(catalog.task_styles()) == 3108
    ids = [int(name.split("_")[1][4:]) for name in catalog.tasks]
    assert ids == sorted(set(range(1, 1612)) - niv2.MMLU_TASK_IDS)
    assert len(catalog.members("niv2_zsopt")) == 1554


def test_template_counts(catalog):
    spec = catalog.tasks[SENTIMENT]
    opt, noopt = spec.templates["opt"], spec.templates["noopt"]
    assert len(opt) >= 10 and len(noopt) >= 10
    for group in (opt, noopt):
        assert len({(t.instruction, t.input) for t in group}) == len(group)
        assert all("{definition}" in t.instruction and "{input}" in t.input for t in group)
        assert all(t.target == "{answer}" for t in group)
    assert all("{options_}" in t.instruction + t.input for t in opt)
    assert not any("{options_}" in t.instruction + t.input for t in noopt)
    assert len(spec.few_shot.patterns) >= 3 and spec.few_shot.k == 3
    # Every task shares the one set of validated templates.
    assert all(s.templates is spec.templates for s in catalog.tasks.values())


def test_every_style_renders_every_instance(catalog, rendered):
    for stem, n in FILES.items():
        spec = catalog.tasks[f"niv2_{stem}"]
        instances = raw(stem)["Instances"]
        for style in STYLES:
            name = spec.task_name(style)
            rows = rendered[name]
            assert [r["_example_index"] for r in rows] == list(range(n)), name
            for row, inst in zip(rows, instances):
                prompt = row["inputs_pretokenized"]
                assert row["_task_name"] == name and row["_template_type"] == style
                assert f"tasks/{stem}.json" in row["_task_source"]
                assert row["targets_pretokenized"] == inst["output"][0]  # the first output
                assert prompt.count(definition(stem)) == 1, prompt  # instruction shown once
                assert prompt.count(inst["input"]) == 1
                template = spec.templates["opt"][row["_template_idx"]]
                assert prompt.startswith(template.instruction.split("{definition}")[0])


def test_no_options_styles_render(catalog):
    for stem in FILES:
        spec = dataclasses.replace(catalog.tasks[f"niv2_{stem}"],
                                   styles=("zs_noopt", "fs_noopt"))
        data, instances = TaskData(spec), raw(stem)["Instances"]
        for style in spec.styles:
            rows = list(FlanDataSource(data, style, seqio.ByteVocabulary()).rendered("train"))
            assert [r["targets"] for r in rows] == [i["output"][0] for i in instances]
            for row, inst in zip(rows, instances):
                assert row["inputs"].count(definition(stem)) == 1
                assert inst["input"] in row["inputs"]
                assert not any(h in row["inputs"] for h in OPTION_HEADERS)


def test_options_are_listed_for_closed_set_tasks_only(catalog, rendered):
    data = TaskData(catalog.tasks[SENTIMENT])
    assert [ex["options"] for _, ex in data.examples("train")] == [["negative", "positive"]] * 6
    for name in (QGEN, TRANSLATION):
        assert all(ex["options"] == [] for _, ex in TaskData(catalog.tasks[name]).examples("train"))
    for style in STYLES:
        for row in rendered[f"{SENTIMENT}_{style}"]:
            prompt = row["inputs_pretokenized"]
            assert any(h in prompt for h in OPTION_HEADERS), prompt
            assert "positive" in prompt and "negative" in prompt
        for name in (QGEN, TRANSLATION):
            for row in rendered[f"{name}_{style}"]:
                prompt = row["inputs_pretokenized"]
                assert not any(h in prompt for h in OPTION_HEADERS), prompt
                assert prompt == prompt.rstrip() or style == "fs_opt", repr(prompt)
    assert niv2.closed_set(["a", "b", "a", "b"], 4) == ["a", "b"]
    assert niv2.closed_set(["a", "b", "c"], 3) == []  # every answer seen once: open-ended
    assert niv2.closed_set([str(i) for i in range(11)] * 5, 55) == []  # too many answers


def test_few_shot_exemplars_are_positive_examples_never_the_query(catalog, rendered):
    for stem in FILES:
        data = raw(stem)
        positives, instances = data["Positive Examples"], data["Instances"]
        negatives = data["Negative Examples"]
        for row in rendered[f"niv2_{stem}_fs_opt"]:
            prompt, index = row["inputs_pretokenized"], row["_example_index"]
            query = instances[index]["input"]
            assert prompt.count(query) == 1, prompt
            assert prompt.index(definition(stem)) < prompt.index(query)
            shots = [p for p in positives if p["input"] != query and p["input"] in prompt]
            assert len(shots) == min(3, len([p for p in positives if p["input"] != query]))
            for shot in shots:  # each exemplar comes with its output, before the query
                assert shot["output"] in prompt
                assert prompt.index(shot["input"]) < prompt.index(query)
            others = [i["input"] for i in instances if i["input"] != query]
            assert not any(o in prompt for o in others if o not in {p["input"] for p in positives})
            assert not any(n["input"] in prompt or n["explanation"] in prompt for n in negatives)
    # Instance 3 of the sentiment task is also its second Positive Example: never its own shot.
    row = rendered[f"{SENTIMENT}_fs_opt"][3]
    assert row["inputs_pretokenized"].count("Arrived broken") == 1


def test_few_shot_budget_keeps_the_instruction(catalog):
    spec = catalog.tasks[TRANSLATION]
    tight = dataclasses.replace(spec, few_shot=dataclasses.replace(spec.few_shot, budget=50))
    source = FlanDataSource(TaskData(tight), "fs_opt", seqio.ByteVocabulary())
    for row, inst in zip(source.rendered("train"), raw(TRANSLATION[5:])["Instances"]):
        assert row["inputs"].count(definition(TRANSLATION[5:])) == 1
        assert not any(p["input"] in row["inputs"]
                       for p in raw(TRANSLATION[5:])["Positive Examples"])
        assert inst["input"] in row["inputs"]


def test_parse_takes_the_first_output():
    base = {"definition": "d", "options": []}
    assert niv2.parse({**base, "id": "t-1", "input": " q ", "output": ["a", "b"]})["answer"] == "a"
    assert niv2.parse({**base, "input": "q", "output": ["", " b "]})["answer"] == "b"
    assert niv2.parse({**base, "input": "q", "output": "c"})["answer"] == "c"  # exemplars
    assert niv2.parse({**base, "input": 12, "output": [3]})["answer"] == "3"  # numbers as text
    with pytest.raises(DataFormatError, match="field 'output' should be a non-empty list"):
        niv2.parse({**base, "id": "t-9", "input": "q", "output": []})
    with pytest.raises(DataFormatError, match="field 'input' should be text, got None"):
        niv2.parse({**base, "id": "t-9", "output": ["a"]})
    with pytest.raises(EmptyFieldError, match="field 'output' has no non-empty answer"):
        niv2.parse({**base, "input": "q", "output": [""]})
    with pytest.raises(EmptyFieldError, match="field 'input' is empty"):
        niv2.parse({**base, "input": " ", "output": ["a"]})


def test_submix_shares_with_the_cap(catalog, tmp_path):
    shares = mixing.shares(catalog, "niv2_submix", mixing.example_count)
    # Measured: 6 + 5 + 4 = 15 Instances (the cap does not bind); zs : fs = 1 : 1.
    expected = {f"niv2_{stem}_{style}": 0.5 * n / 15 for stem, n in FILES.items()
                for style in STYLES}
    assert shares == pytest.approx(expected)
    assert shares[f"{SENTIMENT}_zs_opt"] == pytest.approx(0.2)
    mixture = seqio.get_mixture_or_task("niv2_submix")
    assert mixture.get_rate(seqio.get_mixture_or_task(f"{QGEN}_fs_opt")) == pytest.approx(1 / 6)
    # Counted once per file (not per style) and cached.
    cache = json.loads((tmp_path / "cache" / "counts.json").read_text())
    assert sorted(cache.values()) == [4, 5, 6] and len(cache) == 3
    # With the cap binding: 6,500 and 5,000 count as 5,000; 1,200 as it is.
    counts = {SENTIMENT: 6500, QGEN: 1200, TRANSLATION: 5000}
    capped = mixing.shares(catalog, "niv2_submix", lambda t: counts[t.rsplit("_", 2)[0]])
    total = 5000 + 1200 + 5000
    assert total == 11200
    assert capped[f"{SENTIMENT}_zs_opt"] == pytest.approx(0.5 * 5000 / 11200)  # 0.22321...
    assert capped[f"{QGEN}_fs_opt"] == pytest.approx(0.5 * 1200 / 11200)  # 0.05357...
    assert capped[f"{TRANSLATION}_fs_opt"] == capped[f"{SENTIMENT}_fs_opt"]
    assert sum(capped.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_without_data_the_catalog_loads_and_mixtures_fail_clearly(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ENV)
    else:
        monkeypatch.setenv(ENV, value)
    catalog = register_catalog(load_catalog([NIV2_TASKS, CATALOG_DIR / "cot"]))
    assert [n for n, s in catalog.tasks.items() if s.collection == "niv2"] == [niv2.PLACEHOLDER]
    assert len([s for s in catalog.tasks.values() if s.collection == "cot"]) == 9
    assert catalog.members("niv2_zsopt") == [f"{niv2.PLACEHOLDER}_zs_opt"]
    with pytest.raises(MissingDataError) as info:
        seqio.get_mixture_or_task("niv2_submix").get_dataset(LENGTHS, split="train")
    assert set(info.value.missing) == {f"{niv2.PLACEHOLDER}_{s}" for s in STYLES}
    message = str(info.value)
    assert f"${ENV} is not set" in message and "tasks/taskNNN_name.json" in message
    assert "allenai/natural-instructions" in message


def test_dropping_missing_niv2_is_explicit_in_a_parent_mixture(tmp_path, monkeypatch):
    """A parent mixture over CoT and NIv2 without NIv2 data fails naming the variable, or,
    with FLAN_JAX_DROP_MISSING_TASKS=1, gives NIv2's weight to CoT."""
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("FLAN_JAX_COT_DIR", str(FIXTURES / "cot"))
    parent = tmp_path / "parent.yaml"
    parent.write_text("mixtures:\n  - {name: cot_niv2_test, mixtures: {cot_zs: 1, niv2_submix: 1}}\n")
    register_catalog(load_catalog([NIV2_TASKS, CATALOG_DIR / "cot", parent]))
    mixture = seqio.get_mixture_or_task("cot_niv2_test")
    with pytest.raises(MissingDataError, match=f"\\${ENV} is not set") as info:
        mixture.get_dataset(LENGTHS, split="train")
    assert set(info.value.missing) == {f"{niv2.PLACEHOLDER}_{s}" for s in STYLES}
    shares = mixture.without_missing().shares()
    assert all(name.startswith("cot_") and name.endswith("_zs_cot") for name in shares)
    assert sum(shares.values()) == pytest.approx(1.0)


def test_the_whole_catalog_loads_without_niv2_data(monkeypatch):
    monkeypatch.delenv(ENV)
    catalog = load_catalog()
    assert {"niv2_zsopt", "niv2_fsopt", "niv2_submix"} <= set(catalog.mixtures)
    assert niv2.PLACEHOLDER in catalog.tasks


def test_wrong_directory_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    catalog = register_catalog(load_catalog([NIV2_TASKS]))
    assert list(catalog.tasks) == [niv2.PLACEHOLDER]
    with pytest.raises(MissingDataError, match=re.escape(f"{tmp_path}/tasks is not a directory")):
        seqio.get_mixture_or_task("niv2_zsopt").get_dataset(LENGTHS, split="train")
    (tmp_path / "tasks").mkdir()
    with pytest.raises(MissingDataError, match=re.escape(f"no task files in {tmp_path}/tasks")):
        seqio.get_mixture_or_task("niv2_zsopt").get_dataset(LENGTHS, split="train")


def test_malformed_file_is_named(monkeypatch):
    bad = NIV2_DATA / "malformed"
    monkeypatch.setenv(ENV, str(bad))
    catalog = register_catalog(load_catalog([NIV2_TASKS]))  # discovery reads nothing: no error
    assert list(catalog.tasks) == ["niv2_task004_toy_truncated_file"]
    pattern = r"task004_toy_truncated_file\.json:\d+: malformed JSON"
    with pytest.raises(DataFormatError, match=pattern):
        list(TaskData(catalog.tasks["niv2_task004_toy_truncated_file"]).examples("train"))
    # Building the mixture stops at the rates (counting reads the file), outside tf.data.
    with pytest.raises(DataFormatError, match=pattern):
        seqio.get_mixture_or_task("niv2_submix").get_dataset(LENGTHS, split="train")


def test_task_without_instances_and_missing_file_are_named(tmp_path, monkeypatch):
    shutil.copytree(NIV2_DATA / "tasks", tmp_path / "tasks")
    empty = raw(QGEN[5:])
    del empty["Instances"]
    (tmp_path / "tasks" / f"{QGEN[5:]}.json").write_text(json.dumps(empty))
    monkeypatch.setenv(ENV, str(tmp_path))
    catalog = register_catalog(load_catalog([NIV2_TASKS]))
    with pytest.raises(DataFormatError, match=rf"{QGEN[5:]}\.json: the task has no 'Instances'"):
        list(TaskData(catalog.tasks[QGEN]).examples("train"))
    (tmp_path / "tasks" / f"{TRANSLATION[5:]}.json").unlink()
    with pytest.raises(MissingDataError) as info:
        seqio.get_mixture_or_task("niv2_submix").get_dataset(LENGTHS, split="train")
    assert set(info.value.missing) == {f"{TRANSLATION}_{s}" for s in STYLES}
    assert f"data file not found: {tmp_path}/tasks/{TRANSLATION[5:]}.json" in str(info.value)


def test_task_list_selects_tasks(monkeypatch):
    monkeypatch.setenv(niv2.TASK_LIST_ENV, "splits/default/train_tasks.txt")
    catalog = load_catalog([NIV2_TASKS])  # the list also names the MMLU task: still left out
    assert list(catalog.tasks) == [SENTIMENT, TRANSLATION]
    monkeypatch.setenv(niv2.TASK_LIST_ENV, "splits/nowhere.txt")
    catalog = register_catalog(load_catalog([NIV2_TASKS]))
    assert list(catalog.tasks) == [niv2.PLACEHOLDER]
    with pytest.raises(MissingDataError, match=r"task list .*splits/nowhere\.txt"):
        seqio.get_mixture_or_task("niv2_zsopt").get_dataset(LENGTHS, split="train")


def test_tasks_cli_check(capsys, monkeypatch):
    monkeypatch.setenv("FLAN_JAX_TASK_PATHS", "")
    assert tasks.main(["check", "niv2_submix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "6 of 6 tasks can read and render their data"
    assert all(line.startswith("OK       niv2_task00") for line in lines[:-1])


def _expand_catalog(tmp_path, ref):
    path = tmp_path / "gen.yaml"
    path.write_text(textwrap.dedent(f"""
        defaults:
          parser: {{fields: [question, answer]}}
          templates: {{noopt: [{{input: "{{question}}", target: "{{answer}}"}}]}}
        tasks:
          - {{expand: "{ref}", collection: generated}}
        """))
    return path


def generated_tasks():
    return [{"name": f"gen_{i}", "source": {"generated": "flan_jax.data.demo.generators:arithmetic",
                                             "splits": {"train": 5}}} for i in range(3)]


def test_expand_items_in_any_catalog(tmp_path):
    path = _expand_catalog(tmp_path, "test_niv2_collection:generated_tasks")
    catalog = load_catalog([path])
    assert list(catalog.tasks) == ["gen_0", "gen_1", "gen_2"]
    assert {s.collection for s in catalog.tasks.values()} == {"generated"}
    with pytest.raises(CatalogError, match=r"gen\.yaml: tasks\[0\]\.expand: .*no function"):
        load_catalog([_expand_catalog(tmp_path, "test_niv2_collection:nothing_here")])
    with pytest.raises(CatalogError, match="must return a list of task definitions"):
        load_catalog([_expand_catalog(tmp_path, "os:getcwd")])


def test_source_errors_are_flan_jax_errors(catalog, monkeypatch):
    monkeypatch.delenv(ENV)
    with pytest.raises(FlanJaxError, match=f"\\${ENV} is not set"):
        list(TaskData(catalog.tasks[SENTIMENT]).examples("train"))
