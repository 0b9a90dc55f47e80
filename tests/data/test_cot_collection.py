"""The chain-of-thought collection (tasks/cot) rendered on TSV fixtures in the Flan CoT layout."""

import csv
import shutil

import pytest
import seqio

from flan_jax import tasks
from flan_jax.data import mixing
from flan_jax.data.collections import cot
from flan_jax.data.datasource import FlanDataSource, TaskData, as_numpy
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.errors import DataFormatError, MissingDataError

from conftest import FIXTURES, REPO

COT_TASKS = REPO / "tasks" / "cot"
COT_DATA = FIXTURES / "cot"
ENV = "FLAN_JAX_COT_DIR"
LENGTHS = {"inputs": 2048, "targets": 512}
STYLES = ("zs_cot", "fs_cot", "zs_inv", "fs_inv")
# Rows in each fixture file (tests/fixtures/cot/{dataset}_train.tsv).
ROWS = {"gsm8k": 8, "strategyqa": 7, "creak": 5, "qasc": 6, "esnli": 7, "ecqa": 5,
        "sensemaking": 6, "aqua": 8, "qed": 5}


@pytest.fixture(autouse=True)
def cot_dir(monkeypatch):
    monkeypatch.setenv(ENV, str(COT_DATA))


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog([COT_TASKS]))


@pytest.fixture(scope="module")
def rendered(catalog):
    """Every CoT seqio task's train split through the seqio pipeline, rendered once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(COT_DATA))
        return {spec.task_name(style): dataset_rows(spec.task_name(style))
                for spec in catalog.tasks.values() for style in spec.styles}


def raw_rows(dataset):
    with open(COT_DATA / f"{dataset}_train.tsv", encoding="utf-8", newline="") as f:
        return [dict(zip(cot.FIELDS, row)) for row in csv.reader(f, delimiter="\t",
                                                                   quoting=csv.QUOTE_NONE)]


def fields(dataset):
    return [cot.parse(raw) for raw in raw_rows(dataset)]


def dataset_rows(name):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split="train", shuffle=False)
    return [{k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()}
            for row in ds.as_numpy_iterator()]


def test_fixtures_have_the_flan_cot_layout():
    for dataset, n in ROWS.items():
        lines = (COT_DATA / f"{dataset}_train.tsv").read_text(encoding="utf-8").splitlines()
        assert len(lines) == n and 5 <= n <= 8
        assert all(line.count("\t") == 2 for line in lines)
        assert not lines[0].lower().startswith("question\t")  # no header
        assert any("\\n" in line for line in lines), dataset


def test_catalog_shape_and_template_counts(catalog):
    assert sorted(catalog.tasks) == sorted(f"cot_{d}" for d in ROWS)
    for spec in catalog.tasks.values():
        assert spec.collection == "cot" and spec.metrics == ("accuracy",)
        assert set(spec.styles) == set(STYLES)
        assert spec.source.data_dir_env == ENV
        assert spec.source.splits == {"train": f"{spec.name[4:]}_train.tsv"}
        cot_t, inv_t = spec.templates["cot"], spec.templates["inv"]
        assert len(cot_t) >= 10 and len(inv_t) >= 10, spec.name
        assert spec.few_shot.k == 3 and len(spec.few_shot.patterns) >= 3
        # Distinct triggers, a rationale before a varied connective and the answer.
        assert len({t.input for t in cot_t}) == len(cot_t)
        assert all(t.target.startswith("{rationale}") for t in cot_t)
        assert all(t.target.rstrip(".").endswith("{answer}") for t in cot_t)
        assert len({t.target for t in cot_t}) >= 8
        # Inversions: rationale -> question, question + answer -> rationale,
        # answer -> question and rationale; all three kinds are present.
        kinds = {inversion_kind(t.target) for t in inv_t}
        assert kinds == {"question", "rationale", "both"}, spec.name
        for t in inv_t:
            kind = inversion_kind(t.target)
            if kind == "question":
                assert "{rationale}" in t.input or "{answer}" in t.input
            elif kind == "rationale":
                assert "{question}" in t.input and "{answer}" in t.input
            else:
                assert "{answer}" in t.input and "{question}" not in t.input


def inversion_kind(target_template):
    if target_template == "{question}":
        return "question"
    if target_template == "{rationale}":
        return "rationale"
    assert "{question}" in target_template and "{rationale}" in target_template
    return "both"


def test_every_style_renders_every_row(catalog, rendered):
    for dataset, n in ROWS.items():
        spec = catalog.tasks[f"cot_{dataset}"]
        expected = fields(dataset)
        for style in STYLES:
            name = spec.task_name(style)
            rows = rendered[name]
            assert [r["_example_index"] for r in rows] == list(range(n)), name
            for row, ex in zip(rows, expected):
                assert row["_task_name"] == name and row["_template_type"] == style
                assert f"{dataset}_train.tsv" in row["_task_source"]
                assert "\\n" not in row["inputs_pretokenized"] + row["targets_pretokenized"]
                template = spec.templates[style.split("_")[1]][row["_template_idx"]]
                assert row["targets_pretokenized"] == template.target.format(**ex), name


def test_cot_targets_end_with_the_answer(rendered):
    for dataset in ROWS:
        raws, expected = raw_rows(dataset), fields(dataset)
        for style in ("zs_cot", "fs_cot"):
            for row, raw, ex in zip(rendered[f"cot_{dataset}_{style}"], raws, expected):
                target = row["targets_pretokenized"]
                assert target.endswith((ex["answer"], ex["answer"] + ".")), target
                assert target.startswith(ex["rationale"]) and len(target) > len(ex["rationale"])
                if "\\n" in raw["rationale"]:
                    assert ex["rationale"].count("\n") == raw["rationale"].count("\\n")
                    assert "\n" in target
                assert ex["question"] in row["inputs_pretokenized"]


def test_inversion_targets(catalog, rendered):
    for dataset in ROWS:
        spec = catalog.tasks[f"cot_{dataset}"]
        for style in ("zs_inv", "fs_inv"):
            for row, ex in zip(rendered[f"cot_{dataset}_{style}"], fields(dataset)):
                template = spec.templates["inv"][row["_template_idx"]]
                target, prompt = row["targets_pretokenized"], row["inputs_pretokenized"]
                kind = inversion_kind(template.target)
                if kind == "question":
                    assert target == ex["question"]
                    assert ex["question"] not in prompt
                elif kind == "rationale":
                    assert target == ex["rationale"]
                    assert ex["question"] in prompt and ex["rationale"] not in prompt
                else:
                    assert ex["question"] in target and ex["rationale"] in target
                    assert ex["question"] not in prompt and ex["rationale"] not in prompt


def test_few_shot_prompts_have_exemplars_and_the_query_once(catalog, rendered):
    for dataset in ROWS:
        spec = catalog.tasks[f"cot_{dataset}"]
        examples = fields(dataset)
        for style in ("fs_cot", "fs_inv"):
            group = style.split("_")[1]
            for row in rendered[f"cot_{dataset}_{style}"]:
                index, prompt = row["_example_index"], row["inputs_pretokenized"]
                template = spec.templates[group][row["_template_idx"]]
                query = template.input.format(**examples[index])
                assert prompt.count(query) == 1, prompt
                if style == "fs_inv":
                    continue
                assert prompt.count(examples[index]["question"]) == 1, prompt
                shots = [ex for i, ex in enumerate(examples)
                         if i != index and ex["question"] in prompt]
                assert 1 <= len(shots) <= spec.few_shot.k, prompt
                for ex in shots:  # each exemplar is solved, rationale and answer included
                    assert template.target.format(**ex) in prompt
                assert examples[index]["rationale"] not in prompt


def test_submix_shares(catalog):
    shares = mixing.shares(catalog, "cot_submix", mixing.example_count)
    assert len(shares) == 4 * 9
    # Leaf mixtures are examples-proportional over the 57 fixture rows (the cap of
    # 100,000 does not bind); cot_zs : cot_fs : cot_zs_inv : cot_fs_inv = 1 : 1 : 0.3 : 0.3,
    # so each base style holds 1 / 2.6 of the mass and each inversion style 0.3 / 2.6.
    total = 8 + 7 + 5 + 6 + 7 + 5 + 6 + 8 + 5
    assert total == 57 == sum(ROWS.values())
    base, inv = 1 / 2.6, 0.3 / 2.6
    expected = {}
    for dataset, n in ROWS.items():
        for style, weight in (("zs_cot", base), ("fs_cot", base), ("zs_inv", inv),
                              ("fs_inv", inv)):
            expected[f"cot_{dataset}_{style}"] = weight * n / total
    assert shares == pytest.approx(expected)
    assert shares["cot_gsm8k_zs_cot"] == pytest.approx(8 / 148.2)  # 57 * 2.6 = 148.2
    assert shares["cot_qed_fs_inv"] == pytest.approx(1.5 / 148.2)  # 0.3 * 5
    assert sum(shares.values()) == pytest.approx(1.0)
    leaf = mixing.shares(catalog, "cot_zs", mixing.example_count)
    assert leaf == pytest.approx({f"cot_{d}_zs_cot": n / 57 for d, n in ROWS.items()})
    mixture = seqio.get_mixture_or_task("cot_submix")
    assert mixture.get_rate(seqio.get_mixture_or_task("cot_aqua_fs_cot")) == pytest.approx(
        8 / 148.2)


def test_missing_data_names_every_task_and_the_variable(catalog, monkeypatch):
    monkeypatch.delenv(ENV)
    monkeypatch.delenv(mixing.DROP_MISSING_ENV, raising=False)
    mixture = seqio.get_mixture_or_task("cot_submix")
    with pytest.raises(MissingDataError) as info:
        mixture.get_dataset(LENGTHS, split="train")
    assert set(info.value.missing) == {f"cot_{d}_{s}" for d in ROWS for s in STYLES}
    for name, reason in info.value.missing.items():
        assert f"{name.split('_')[1]}_train.tsv" in reason and f"${ENV}" in reason


def test_malformed_row_names_the_file_and_line(catalog, tmp_path, monkeypatch):
    shutil.copytree(COT_DATA, tmp_path / "cot")
    with open(tmp_path / "cot" / "gsm8k_train.tsv", "a", encoding="utf-8") as f:
        f.write("How many legs do 3 spiders have?\t24\n")  # line 9: the rationale is missing
    monkeypatch.setenv(ENV, str(tmp_path / "cot"))
    data = TaskData(catalog.tasks["cot_gsm8k"])
    # 1 malformed row of 9 is over the 5% limit: the task stops, naming task, file and line.
    message = (r"task 'cot_gsm8k' .*split 'train': 1 of the 9 rows read are malformed.*"
               r"gsm8k_train\.tsv line 9: expected 3 columns \(question, answer, rationale\)")
    with pytest.raises(DataFormatError, match=message):
        list(data.examples("train"))
    # Through seqio's tf.data pipeline: the same one message, not TensorFlow's traceback.
    source = FlanDataSource(data, "zs_cot", seqio.ByteVocabulary())
    with pytest.raises(DataFormatError, match=message):
        list(as_numpy(source.get_dataset("train")))
    monkeypatch.setenv("FLAN_JAX_MAX_MALFORMED", "0.2")  # a looser limit: skipped, counted
    assert len(list(data.examples("train"))) == 8


def test_parser_unescapes_and_rejects_empty_fields():
    out = cot.parse({"question": "  Two lines:\\nhere ", "answer": " 7\t",
                     "rationale": "First.\\nSecond.\\n"})
    assert out == {"question": "Two lines:\nhere", "answer": "7", "rationale": "First.\nSecond."}
    with pytest.raises(DataFormatError, match="empty 'answer'.*Two lines"):
        cot.parse({"question": "Two lines:\\nhere", "answer": "  ", "rationale": "r"})
    with pytest.raises(DataFormatError, match="empty 'question'"):
        cot.parse({"question": "\\n", "answer": "yes", "rationale": "r"})
    with pytest.raises(DataFormatError, match="no 'rationale' column"):
        cot.parse({"question": "q", "answer": "a"})


def test_tasks_cli_check(capsys, monkeypatch):
    """`python -m flan_jax.tasks check cot_submix`: one line per task, then a summary."""
    names = sorted(f"cot_{d}_{s}" for d in ROWS for s in STYLES)
    assert tasks.main(["check", "cot_submix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1].rstrip(":") for line in lines[:-1]) == names
    assert all(line.startswith("OK       cot_") for line in lines[:-1])
    assert lines[-1] == "36 of 36 tasks can read and render their data"
    monkeypatch.delenv(ENV)
    assert tasks.main(["check", "cot_submix"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1].rstrip(":") for line in lines[:-1]) == names
    assert all(line.startswith("MISSING  cot_") and f"${ENV}" in line for line in lines[:-1])
    assert lines[-1] == "0 of 36 tasks can read and render their data"


@pytest.mark.parametrize("drop", ["", "1"])
def test_stats_with_files_missing_prints_the_table_and_names_them(tmp_path, monkeypatch, capsys,
                                                                  drop):
    """Two of the nine TSVs absent (with or without FLAN_JAX_DROP_MISSING_TASKS): no
    FileNotFoundError from the count cache's fingerprint; the others keep their shares."""
    shutil.copytree(COT_DATA, tmp_path / "cot")
    for name in ("aqua", "qed"):
        (tmp_path / "cot" / f"{name}_train.tsv").unlink()
    monkeypatch.setenv(ENV, str(tmp_path / "cot"))
    monkeypatch.setenv(mixing.DROP_MISSING_ENV, drop)
    assert tasks.main(["stats", "cot_submix"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:38]}
    assert rows["cot_aqua_zs_cot"] == ["-", "no", "data", "0.000"]
    assert rows["cot_gsm8k_zs_cot"][:2] == ["8", "measured"]
    present = sum(n for name, n in ROWS.items() if name not in ("aqua", "qed"))
    # zs : fs : zs_inv : fs_inv = 1 : 1 : 0.3 : 0.3 over the seven datasets with data
    assert float(rows["cot_gsm8k_zs_cot"][2]) == pytest.approx(100 / 2.6 * 8 / present, abs=1e-3)
    assert "8 task(s) have neither their data nor a declared size" in out
    assert f"cot_qed_fs_inv: data file not found: {tmp_path / 'cot' / 'qed_train.tsv'}" in out
