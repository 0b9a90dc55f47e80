"""The T0-SF collection (tasks/t0): the 193 P3 prompts, their four styles rendered through
seqio on P3 fixtures in each supported file form, the mixture rates, and the errors."""

import json
import shutil
import time

import pytest
import seqio
import tensorflow as tf

from flan_jax import tasks
from flan_jax.data import mixing
from flan_jax.data.collections import t0
from flan_jax.data.datasource import TaskData
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.data.schema import Template, read_task
from flan_jax.data.sources import make_source
from flan_jax.data.templates import OPTION_HEADERS, without_options_slot
from flan_jax.errors import CatalogError, DataFormatError, FlanJaxError, MissingDataError

from conftest import FIXTURES, REPO

T0_TASKS = REPO / "tasks" / "t0"
P3 = FIXTURES / "p3"
ENV = "FLAN_JAX_P3_DIR"
LENGTHS = {"inputs": 2048, "targets": 512}
STYLES = ("zs_opt", "zs_noopt", "fs_opt", "fs_noopt")

# The fixture prompts (tests/fixtures/p3), each a JSONL export, and their number of records.
QA = "adversarial_qa_dbert_answer_the_following_q"  # open-ended; in {P3}/{prompt}/
SEPARATED = "amazon_polarity_Is_this_product_review_positive"  # choices not in the prompt
CHOICES_SHOWN = "quartz_answer_question_below"  # multiple choice, choices written in the prompt
FIXTURE_FILES = {QA: P3 / QA / "train.jsonl",
                 SEPARATED: P3 / "data" / SEPARATED / "train.jsonl",  # the P3 clone layout
                 CHOICES_SHOWN: P3 / CHOICES_SHOWN / "train.jsonl"}
ROWS = {QA: 6, SEPARATED: 5, CHOICES_SHOWN: 5}

# Prompts per dataset group, counted in google-research/FLAN flan/v2/constants_t0.py
# (in_flan False, no *_score_eval variants).
GROUP_SIZES = {
    "adversarial_qa": 15, "amazon_polarity": 9, "app_reviews": 4, "cos_e": 11, "dbpedia_14": 4,
    "dream": 5, "duorc_ParaphraseRC": 9, "duorc_SelfRC": 9, "hotpotqa": 5, "qasc": 8,
    "quail": 13, "quarel": 5, "quartz": 8, "quoref": 11, "race_high": 8, "race_middle": 8,
    "ropes": 12, "sciq": 5, "social_i_qa": 6, "web_questions": 5, "wiki_bio": 5, "wiki_hop": 9,
    "wiki_qa": 11, "wiqa": 8,
}
# Flan's "t0_multiple_choice_separated_options" prompts: their opt styles list the choices.
SEPARATED_PROMPTS = {
    "amazon_polarity_Is_this_product_review_positive", "amazon_polarity_Is_this_review_negative",
    "amazon_polarity_User_recommend_this_product", "qasc_is_correct_1", "qasc_is_correct_2",
    "qasc_qa_with_separated_facts_3", "qasc_qa_with_separated_facts_5",
    "quail_context_description_question_text", "quail_context_question_description_text",
    "quail_description_context_question_text",
    "race_high_Read_the_article_and_answer_the_question_no_option_",
    "race_middle_Read_the_article_and_answer_the_question_no_option_", "sciq_Direct_Question",
    "sciq_Direct_Question_Closed_Book_", "social_i_qa_Check_if_a_random_answer_is_valid_or_not",
    "social_i_qa_Generate_answer", "social_i_qa_I_was_wondering", "wiki_qa_Is_This_True_",
    "wiki_qa_automatic_system",
}


def task_of(prompt):
    return "t0_" + prompt.lower().replace(".", "_")


@pytest.fixture(autouse=True)
def p3_dir(monkeypatch):
    monkeypatch.setenv(ENV, str(P3))


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog([T0_TASKS]))


def raw_rows(prompt):
    with open(FIXTURE_FILES[prompt], encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def fields(prompt):
    parse = t0.parse_separated if prompt == SEPARATED else t0.parse
    return [parse(raw) for raw in raw_rows(prompt)]


def plain(value):
    """bytes -> str, numpy arrays and scalars -> Python values."""
    if isinstance(value, bytes):
        return value.decode()
    return value.tolist() if hasattr(value, "tolist") else value


def dataset_rows(name):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split="train", shuffle=False)
    return [{k: plain(v) for k, v in row.items()} for row in ds.as_numpy_iterator()]


@pytest.fixture(scope="module")
def rendered(catalog):
    """Every style of the three fixture prompts through the seqio pipeline, rendered once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(P3))
        return {(prompt, style): dataset_rows(f"{task_of(prompt)}_{style}")
                for prompt in ROWS for style in STYLES}


# --- The prompt list ---------------------------------------------------------------------------

def test_the_catalog_lists_193_prompts_over_24_groups(catalog):
    specs = list(catalog.tasks.values())
    prompts = [spec.source.name for spec in specs]
    assert len(specs) == len(set(prompts)) == 193
    groups = {}
    for prompt in prompts:
        groups[t0.group_of(prompt)] = groups.get(t0.group_of(prompt), 0) + 1
    assert groups == GROUP_SIZES and len(groups) == 24 and sum(GROUP_SIZES.values()) == 193
    for spec in specs:
        assert spec.name == task_of(spec.source.name) and spec.collection == "t0"
        assert set(spec.styles) == set(STYLES)
        assert spec.source.kind == "reader" and spec.source.data_dir_env == ENV
        assert spec.source.reader == "flan_jax.data.collections.t0:P3Source"
        assert spec.source.splits == {"train": "train"} and spec.num_examples["train"] > 0
        separated = spec.parser.function == "flan_jax.data.collections.t0:parse_separated"
        assert separated == (spec.source.name in SEPARATED_PROMPTS), spec.name
    assert len(catalog.task_styles()) == 4 * 193
    # Spot checks against the FLAN list, odd spellings included.
    for prompt in ("adversarial_qa_dbert_answer_the_following_q", "cos_e_v1.11_i_think",
                   "kilt_tasks_hotpotqa_straighforward_qa", "dbpedia_14_given_a_choice_of_categories_",
                   "wiki_hop_original_generate_subject_and_object", "quoref_Read_And_Extract_"):
        assert prompt in prompts
    assert catalog.tasks["t0_cos_e_v1_11_i_think"].num_examples == {"train": 9741}
    assert catalog.tasks["t0_duorc_selfrc_build_story_around_qa"].num_examples == {"train": 60094}
    assert not any(p.startswith(("super_glue", "anli", "glue", "imdb", "squad")) for p in prompts)


def test_wrappers_keep_the_prompt_and_opt_wrappers_read_without_options(catalog):
    spec = catalog.tasks[task_of(QA)]
    noopt, opt = spec.templates["noopt"], spec.templates["opt"]
    assert len(noopt) >= 10 and len(opt) >= 10
    assert noopt[0] == Template("{prompt}", "{answer}")  # the bare prompt comes first
    assert opt[0].input == "{prompt}\n\n{options_}"
    for template in (*noopt, *opt):
        assert template.input.count("{prompt}") == 1 and template.target == "{answer}"
    # Without options an opt wrapper is a plain wrapper: no dangling blank lines.
    for template in opt:
        text = without_options_slot(template).input
        assert "{options_}" not in text and text == text.strip() and "\n\n\n" not in text
    assert without_options_slot(Template("Input: {p}\n{options_}\nOutput:", "{a}")).input == (
        "Input: {p}\nOutput:")
    assert without_options_slot(Template("{options_}\n\nRead.\n{p}", "{a}")).input == "Read.\n{p}"


# --- Rendering through seqio -------------------------------------------------------------------

def test_every_style_renders_every_record_and_keeps_the_prompt(catalog, rendered):
    for prompt, n in ROWS.items():
        spec = catalog.tasks[task_of(prompt)]
        expected = fields(prompt)
        assert any("\n" in ex["prompt"] for ex in expected)
        for style in STYLES:
            rows = rendered[prompt, style]
            name = f"{task_of(prompt)}_{style}"
            assert [r["_example_index"] for r in rows] == list(range(n)), name
            for row, ex in zip(rows, expected):
                assert row["_task_name"] == name and row["_template_type"] == style
                assert f"P3 prompt {prompt} (jsonl files in {P3})" == row["_task_source"]
                assert row["targets_pretokenized"] == ex["answer"]
                # The prompt, line breaks and all, appears in the input exactly as in P3
                # (surrounding whitespace aside).
                assert row["inputs_pretokenized"].count(ex["prompt"]) >= 1
                template = spec.templates[style.split("_")[1]][row["_template_idx"]]
                if style == "zs_noopt":
                    assert row["inputs_pretokenized"] == template.input.format(**ex)


def test_parser_strips_only_the_ends():
    raws = raw_rows(QA)
    assert raws[1]["inputs_pretokenized"].endswith(" \n")  # the fixture's trailing whitespace
    assert raws[0]["targets_pretokenized"] == " 1932"
    out = t0.parse(raws[1])
    assert out["prompt"] == raws[1]["inputs_pretokenized"].strip() and "\n\n" in out["prompt"]
    assert t0.parse(raws[0])["answer"] == "1932" and out["options"] == []


def test_opt_styles_list_the_answer_choices_only_where_the_prompt_does_not(rendered):
    for row, ex in zip(rendered[SEPARATED, "zs_opt"], fields(SEPARATED)):
        text = row["inputs_pretokenized"]
        assert ex["options"] == ["No", "Yes"]
        assert any(header in text for header in OPTION_HEADERS), text
        rest = text.replace(ex["prompt"], "")
        assert rest.index("No") < rest.index("Yes"), text  # both choices, in order
    for row in rendered[SEPARATED, "zs_noopt"]:
        assert not any(header in row["inputs_pretokenized"] for header in OPTION_HEADERS)
    for prompt in (QA, CHOICES_SHOWN):  # open-ended, or choices already in the prompt
        for row, ex in zip(rendered[prompt, "zs_opt"], fields(prompt)):
            text = row["inputs_pretokenized"]
            assert not any(header in text for header in OPTION_HEADERS), text
            assert text == text.strip() and "\n\n\n" not in text.replace(ex["prompt"], "")
    choices_shown = raw_rows(CHOICES_SHOWN)[0]
    assert choices_shown["answer_choices"] == ["heavier", "lighter"]
    assert "heavier or lighter" in choices_shown["inputs_pretokenized"]


def test_few_shot_exemplars_come_from_train_and_never_are_the_query(rendered):
    for prompt in ROWS:
        examples = fields(prompt)
        for style in ("fs_opt", "fs_noopt"):
            for row in rendered[prompt, style]:
                index, text = row["_example_index"], row["inputs_pretokenized"]
                query = examples[index]["prompt"]
                twins = [i for i, ex in enumerate(examples) if ex["prompt"] == query]
                # The query shows once, even when the split holds an identical record.
                assert text.count(query) == 1, text
                shots = {ex["prompt"]: ex["answer"] for i, ex in enumerate(examples)
                         if i not in twins and ex["prompt"] in text}
                assert 1 <= len(shots) <= 3, text  # k = 3 (identical records show the same text)
                for shot, answer in shots.items():  # each exemplar is answered, before the query
                    assert answer in text and text.index(shot) < text.index(query)
    # The SEPARATED fixture holds two identical records (0 and 4): neither is the other's shot.
    assert fields(SEPARATED)[0] == fields(SEPARATED)[4]


def test_rendering_is_deterministic(rendered):
    assert dataset_rows(f"{task_of(SEPARATED)}_fs_opt") == rendered[SEPARATED, "fs_opt"]


# --- The file forms ----------------------------------------------------------------------------

def write_tfrecord(folder, rows, split="train"):
    """A prompt folder as bigscience/P3 publishes it: tf.train.Example records."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.tfrecord-00000-of-00001"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            feature = {
                "inputs": tf.train.Feature(int64_list=tf.train.Int64List(value=[5, 6, 7])),
                "targets": tf.train.Feature(int64_list=tf.train.Int64List(value=[8])),
            }
            for key in (t0.PROMPT, t0.ANSWER):
                feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[row[key].encode()]))
            if t0.CHOICES in row:
                feature[t0.CHOICES] = tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[c.encode() for c in row[t0.CHOICES]]))
            writer.write(tf.train.Example(features=tf.train.Features(
                feature=feature)).SerializeToString())
    (folder / f"info.{split}.json").write_text(json.dumps({"num_examples": len(rows)}))
    return path


def write_arrow(folder, rows, split="train"):
    """A `datasets.DatasetDict.save_to_disk` folder (Arrow stream files)."""
    import pyarrow as pa

    (folder / split).mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(folder / split / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=2)
    (folder / split / "state.json").write_text(json.dumps(
        {"_data_files": [{"filename": "data-00000-of-00001.arrow"}], "_split": split}))
    (folder / split / "dataset_info.json").write_text(json.dumps({"features": {}}))
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": [split]}))


def write_parquet(folder, rows, split="train", hub_layout=False):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / split / "0000.parquet" if hub_layout else folder / f"{split}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(path), row_group_size=2)
    return path


def read_prompt(catalog, prompt, root):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV, str(root))
        data = TaskData(catalog.tasks[task_of(prompt)])
        return data.source.locate("train")[0], [ex for _, ex in data.examples("train")]


@pytest.mark.parametrize("form", ["tfrecord", "arrow", "parquet", "parquet_hub"])
def test_every_file_form_reads_the_same_records(catalog, tmp_path, form):
    for prompt in (SEPARATED, QA):
        rows = raw_rows(prompt)
        folder = tmp_path / ("data" if form == "tfrecord" else "") / prompt
        if form == "tfrecord":
            write_tfrecord(folder, rows)
        elif form == "arrow":
            write_arrow(folder, rows)
        else:
            write_parquet(folder, rows, hub_layout=form == "parquet_hub")
        found, examples = read_prompt(catalog, prompt, tmp_path)
        assert found == form.split("_")[0]
        assert examples == fields(prompt), (form, prompt)


def test_tfrecord_prompt_through_seqio(catalog, rendered, tmp_path, monkeypatch):
    write_tfrecord(tmp_path / "data" / SEPARATED, raw_rows(SEPARATED))
    monkeypatch.setenv(ENV, str(tmp_path))
    rows = dataset_rows(f"{task_of(SEPARATED)}_fs_opt")
    assert rows[0]["_task_source"] == f"P3 prompt {SEPARATED} (tfrecord files in {tmp_path})"
    strip = ("_task_source",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in rendered[SEPARATED, "fs_opt"]]


def test_the_first_form_found_wins(catalog, tmp_path):
    rows = raw_rows(QA)
    write_parquet(tmp_path / QA, rows[:2])
    shutil.copy(FIXTURE_FILES[QA], tmp_path / QA / "train.jsonl")
    assert read_prompt(catalog, QA, tmp_path) == ("parquet", fields(QA)[:2])
    write_tfrecord(tmp_path / "data" / QA, rows[:3])  # the P3 clone layout is tried first
    assert read_prompt(catalog, QA, tmp_path) == ("tfrecord", fields(QA)[:3])


def test_the_tfrecord_reader_checks_record_lengths(tmp_path):
    path = write_tfrecord(tmp_path / QA, raw_rows(QA))
    assert len(list(t0.tfrecords(str(path)))) == 6
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(DataFormatError, match=r"tfrecord-00000-of-00001: record 5 is truncated"):
        list(t0.tfrecords(str(path)))
    path.write_bytes(b'{"inputs_pretokenized": "not a tfrecord"}\n')
    with pytest.raises(DataFormatError, match=r"record 0 is corrupt.*is this a TFRecord file"):
        list(t0.tfrecords(str(path)))


# --- Rates -------------------------------------------------------------------------------------

# min(20,000, train examples) per prompt, summed by group from the FLAN train counts:
# adversarial_qa 15 x 10,000; amazon_polarity 9 x 20,000 (3.6M); app_reviews 4 x 20,000;
# cos_e 11 x 9,741; dbpedia_14 4 x 20,000; dream 5 x 6,116; duorc (both) 18 x 20,000;
# hotpotqa 5 x 20,000; qasc 8 x 8,134; quail 13 x 10,246; quarel 5 x 1,941; quartz 8 x 2,696;
# quoref 11 x 19,399; race (both) 16 x 20,000; ropes 12 x 10,924; sciq 5 x 11,679;
# social_i_qa 6 x 20,000; web_questions 5 x 3,778; wiki_bio 5 x 20,000; wiki_hop 9 x 20,000;
# wiki_qa 5 x 20,000 + 6 x 1,040; wiqa 8 x 20,000.
CAPPED_TOTAL = (150_000 + 180_000 + 80_000 + 107_151 + 80_000 + 30_580 + 360_000 + 100_000
                + 65_072 + 133_198 + 9_705 + 21_568 + 213_389 + 320_000 + 131_088 + 58_395
                + 120_000 + 18_890 + 100_000 + 180_000 + 106_240 + 160_000)


def test_submix_shares_with_the_20000_cap(catalog, monkeypatch):
    monkeypatch.delenv(ENV)  # rates come from the declared counts: no data is read
    assert CAPPED_TOTAL == 2_725_276
    shares = mixing.shares(catalog, "t0_submix", mixing.example_count)
    assert len(shares) == 4 * 193 and sum(shares.values()) == pytest.approx(1.0)
    for prompt, capped in (("amazon_polarity_would_you_buy", 20_000),  # 3,600,000 capped
                           ("wiki_qa_exercise", 20_000),  # 20,360 capped
                           ("quoref_Find_Answer", 19_399),  # just under the cap
                           ("quarel_logic_test", 1_941), ("cos_e_v1.11_rationale", 9_741)):
        for style in STYLES:
            assert shares[f"{task_of(prompt)}_{style}"] == pytest.approx(
                0.25 * capped / 2_725_276), (prompt, style)
    leaf = mixing.shares(catalog, "t0_fsopt", mixing.example_count)
    assert set(leaf) == {f"{spec.name}_fs_opt" for spec in catalog.tasks.values()}
    assert leaf[task_of("wiki_bio_who") + "_fs_opt"] == pytest.approx(20_000 / 2_725_276)
    groups = {}
    for name, share in shares.items():
        group = t0.group_of(catalog.task_styles()[name][0].source.name)
        groups[group] = groups.get(group, 0.0) + share
    assert groups["amazon_polarity"] == pytest.approx(180_000 / 2_725_276)
    assert groups["quoref"] == pytest.approx(213_389 / 2_725_276)
    mixture = seqio.get_mixture_or_task("t0_submix")
    task = seqio.get_mixture_or_task(task_of("quarel_logic_test") + "_zs_opt")
    assert mixture.get_rate(task) == pytest.approx(0.25 * 1_941 / 2_725_276)


# --- Cheap registration, clear errors ----------------------------------------------------------

def test_registration_reads_no_data(monkeypatch):
    monkeypatch.delenv(ENV)

    def no_reading(*args, **kwargs):
        raise AssertionError("registration touched the data")

    monkeypatch.setattr(t0.P3Source, "locate", no_reading)
    monkeypatch.setattr(t0, "tfrecords", no_reading)
    start = time.perf_counter()
    catalog = register_catalog(load_catalog([T0_TASKS]))
    elapsed = time.perf_counter() - start
    assert len(catalog.task_styles()) == 772
    assert elapsed < 5.0  # typically 0.3 s; generous for a loaded machine


def test_the_whole_catalog_loads_without_p3_data(monkeypatch):
    monkeypatch.delenv(ENV)
    catalog = load_catalog()
    assert sum(spec.collection == "t0" for spec in catalog.tasks.values()) == 193
    assert {"t0_zsopt", "t0_zsnoopt", "t0_fsopt", "t0_fsnoopt", "t0_submix"} <= set(catalog.mixtures)
    register_catalog(catalog)


def test_missing_data_messages(catalog, tmp_path, monkeypatch):
    source = TaskData(catalog.tasks[task_of(QA)]).source
    monkeypatch.delenv(ENV)
    reason = source.check("train")
    assert f"P3 prompt {QA}: no data directory" in reason and f"${ENV}" in reason
    monkeypatch.setenv(ENV, str(tmp_path / "nowhere"))
    assert source.check("train") == (f"P3 data directory {tmp_path / 'nowhere'} does not exist "
                                     f"(from ${ENV}); fix ${ENV}")
    monkeypatch.setenv(ENV, str(tmp_path))
    reason = source.check("train")
    assert f"P3 prompt {QA} not found" in reason
    assert str(tmp_path / "data" / QA) in reason and str(tmp_path / QA) in reason
    (tmp_path / QA).mkdir()
    (tmp_path / QA / "validation.jsonl").write_text("")
    reason = source.check("train")
    assert f"no 'train' split in {tmp_path / QA}" in reason
    assert "train.tfrecord-*" in reason and "train/*.arrow" in reason and "train.jsonl" in reason
    with pytest.raises(FlanJaxError, match=f"task '{task_of(QA)}': P3 prompt {QA}: no 'train'"):
        list(source.iter_split("train"))


def test_a_mixture_without_data_names_every_task(catalog, monkeypatch):
    monkeypatch.delenv(ENV)
    monkeypatch.delenv(mixing.DROP_MISSING_ENV, raising=False)
    with pytest.raises(MissingDataError) as info:
        seqio.get_mixture_or_task("t0_zsnoopt").get_dataset(LENGTHS, split="train")
    assert set(info.value.missing) == {f"{spec.name}_zs_noopt" for spec in catalog.tasks.values()}
    assert all(f"${ENV}" in reason for reason in info.value.missing.values())


def test_malformed_records_name_the_file_and_record(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    rows = raw_rows(SEPARATED)
    folder = tmp_path / SEPARATED
    folder.mkdir()
    broken = [dict(r) for r in rows]
    del broken[2][t0.ANSWER]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    data = TaskData(catalog.tasks[task_of(SEPARATED)])
    with pytest.raises(DataFormatError, match=r"train\.jsonl record 2: field 'targets_pretokenized'"
                                              r" is missing \(fields: answer_choices, inputs, "):
        list(data.examples("train"))
    broken = [dict(r) for r in rows]
    broken[1][t0.CHOICES] = "No, Yes"
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    with pytest.raises(DataFormatError, match=r"record 1: field 'answer_choices' should be a list"):
        list(data.examples("train"))
    broken = [dict(r) for r in rows]
    del broken[3][t0.CHOICES]  # a prompt parsed with its choices needs them
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in broken))
    with pytest.raises(DataFormatError, match=r"t0_amazon.*\(P3 prompt .*jsonl files.*split "
                                              r"'train': 1 of the 5 rows read are malformed.*"
                                              r"train\.jsonl record 3: .*needs a non-empty "
                                              r"'answer_choices'"):
        list(data.examples("train"))
    (folder / "train.jsonl").write_text('{"inputs_pretokenized": "x", \n')
    with pytest.raises(DataFormatError, match=r"train\.jsonl line 1: malformed JSON line"):
        list(data.examples("train"))
    (folder / "train.jsonl").unlink()
    (folder / "train.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataFormatError, match=r"train\.parquet: not a readable parquet file"):
        list(data.examples("train"))


def test_tfrecord_records_without_p3_features(catalog, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path))
    folder = tmp_path / "data" / QA
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "train.tfrecord-00000-of-00001")) as writer:
        ex = tf.train.Example(features=tf.train.Features(feature={
            "text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"hello"]))}))
        writer.write(ex.SerializeToString())
    data = TaskData(catalog.tasks[task_of(QA)])
    with pytest.raises(DataFormatError, match=r"record 0 has none of the P3 text features "
                                              r"\(it has: text\)"):
        list(data.examples("train"))


def test_tasks_cli_check(capsys, monkeypatch):
    names = [f"{task_of(p)}_{s}" for p in ROWS for s in STYLES]
    assert tasks.main(["check", *names]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "12 of 12 tasks can read and render their data"
    assert tasks.main(["check", f"{task_of('wiqa_effect_with_label_answer')}_zs_opt"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  t0_wiqa_effect_with_label_answer_zs_opt: P3 prompt wiqa_effect" in out


def test_reader_sources_are_validated(tmp_path):
    base = {"name": "x", "templates": {"noopt": [{"input": "{prompt}", "target": "{answer}"}]},
            "parser": {"function": "flan_jax.data.collections.t0:parse", "fields": ["prompt", "answer"]}}
    with pytest.raises(CatalogError, match=r"source.reader: expected 'module:Class'"):
        read_task("f.yaml", "tasks[0]", {**base, "source": {"reader": "P3Source",
                                                             "splits": {"train": "train"}}})
    with pytest.raises(CatalogError, match=r"source.splits.train: expected the reader's split"):
        read_task("f.yaml", "tasks[0]", {**base, "source": {
            "reader": "flan_jax.data.collections.t0:P3Source", "splits": {"train": 3}}})
    with pytest.raises(CatalogError, match=r"exactly one of 'tfds', 'files', 'generated' or"):
        read_task("f.yaml", "tasks[0]", {**base, "source": {"splits": {"train": "train"}}})
    spec = read_task(str(tmp_path / "f.yaml"), "tasks[0]", {**base, "source": {
        "reader": "flan_jax.data.collections.t0:parse", "splits": {"train": "train"}}})
    with pytest.raises(FlanJaxError, match=r"is not a flan_jax.data.sources.Source subclass"):
        make_source(spec.source, spec.name, spec.file)
    spec = read_task(str(tmp_path / "f.yaml"), "tasks[0]", {**base, "source": {
        "reader": "flan_jax.data.collections.t0:P3Source", "name": QA, "data_dir": "p3",
        "splits": {"train": "train"}}})
    shutil.copytree(P3 / QA, tmp_path / "p3" / QA)  # a per-task data_dir, relative to the YAML
    source = make_source(spec.source, spec.name, spec.file)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(ENV, raising=False)
        assert source.check("train") is None and len(list(source.iter_split("train"))) == 6
