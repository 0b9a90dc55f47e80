"""Flan 2021 (Muffin) NLU and classification tasks over TFDS builders, under mock_data.

Every task builds, every template of every style renders, and each answer is the option
that the raw example's label names (checked against the builder's own ClassLabel names).
"""

import re

import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax import tasks as tasks_cli
from flan_jax.data.collections import flan2021
from flan_jax.data.datasource import TaskData
from flan_jax.data.registry import load_catalog, register_catalog
from flan_jax.data.sources import to_python
from flan_jax.data.templates import FIXED_OPTIONS, OptionsStyle, Renderer, fill

from conftest import REPO

ROOT = REPO
FILES = ["nli", "sentiment", "paraphrase", "commonsense", "coreference",
         "reading_comprehension", "classification"]
NUM_EXAMPLES = 4
LENGTHS = {"inputs": 2048, "targets": 256}
NLI3 = {"entailment": "yes", "e": "yes", "neutral": "it is not possible to tell",
        "n": "it is not possible to tell", "contradiction": "no", "c": "no"}
NLI2 = {"entailment": "yes", "not_entailment": "no"}
TRUE_FALSE = {"True": "yes", "False": "no"}


def _by_name(field, table):
    """Expected answer from the builder's ClassLabel name of `field`."""
    return lambda raw, features: table[features[field].int2str(raw[field])]


def _field_named(mapping):
    """Expected answer: the raw field that the ClassLabel name of `label` points to."""
    return lambda raw, features: raw[mapping[features["label"].int2str(raw["label"])]]


# task -> (split that the task's "validation" reads, expected answer of a raw example)
EXPECTED = {
    "flan2021_anli_r1": ("validation", _by_name("label", NLI3)),
    "flan2021_anli_r2": ("validation", _by_name("label", NLI3)),
    "flan2021_anli_r3": ("validation", _by_name("label", NLI3)),
    "flan2021_mnli_matched": ("validation_matched", _by_name("label", NLI3)),
    "flan2021_mnli_mismatched": ("validation_mismatched", _by_name("label", NLI3)),
    "flan2021_snli": ("validation", _by_name("label", NLI3)),
    "flan2021_cb": ("validation", _by_name("label", NLI3)),
    "flan2021_rte": ("validation", _by_name("label", NLI2)),
    "flan2021_qnli": ("validation", _by_name("label", NLI2)),
    "flan2021_wnli": ("validation", _by_name("label", NLI2)),
    "flan2021_mrpc": ("validation", _by_name("label", {"equivalent": "yes", "not_equivalent": "no"})),
    "flan2021_qqp": ("validation", _by_name("label", {"duplicate": "yes", "not_duplicate": "no"})),
    "flan2021_paws_wiki": ("validation", _by_name(
        "label", {"paraphrase": "yes", "different_meaning": "no"})),
    "flan2021_cola": ("validation", _by_name("label", {"acceptable": "yes", "unacceptable": "no"})),
    "flan2021_sst2": ("validation", _by_name(
        "label", {"positive": "positive", "negative": "negative"})),
    "flan2021_imdb_reviews": ("test", _by_name("label", {"pos": "positive", "neg": "negative"})),
    "flan2021_yelp_polarity_reviews": ("test", _by_name(
        "label", {"2": "positive", "1": "negative"})),
    "flan2021_ag_news_subset": ("test", _by_name("label", {
        "World": "World", "Sports": "Sports", "Business": "Business", "Sci/Tech": "Science/Tech"})),
    "flan2021_trec": ("test", _by_name("label-coarse", {
        "DESC": "description", "ENTY": "entity", "ABBR": "abbreviation", "HUM": "human",
        "NUM": "numeric", "LOC": "location"})),
    "flan2021_wsc": ("validation", _by_name("label", TRUE_FALSE)),
    "flan2021_wic": ("validation", _by_name("label", TRUE_FALSE)),
    "flan2021_multirc": ("validation", _by_name("label", TRUE_FALSE)),
    "flan2021_bool_q": ("validation", lambda raw, f: "yes" if raw["answer"] else "no"),
    "flan2021_copa": ("validation", _field_named({"choice1": "choice1", "choice2": "choice2"})),
    "flan2021_piqa": ("validation", _field_named({"0": "sol1", "1": "sol2"})),
    "flan2021_winogrande": ("validation", _field_named({"1": "option1", "2": "option2"})),
    "flan2021_definite_pronoun_resolution": ("test", lambda raw, f: raw["candidates"][raw["label"]]),
    "flan2021_stsb": ("validation", lambda raw, f: str(int(raw["label"] + 0.5))),
    "flan2021_record": ("validation", lambda raw, f: raw["answers"][0]),
    "flan2021_sentiment140": ("test", lambda raw, f: {0: "negative", 2: "neutral", 4: "positive"}[
        raw["polarity"]]),
    "flan2021_hellaswag": ("validation", lambda raw, f: raw["endings"][raw["label"]].strip()),
    "flan2021_story_cloze": ("test", lambda raw, f: raw["endings"][raw["label"] - 1].strip()),
}

# mock_data draws plain integer labels and free strings at random; these put such fields
# back into the builders' real value ranges (the parsers reject anything else).
REAL_RANGES = {
    "flan2021_hellaswag": lambda raw: {**raw, "endings": raw["endings"][:4],
                                       "label": raw["label"] % min(4, len(raw["endings"]))},
    "flan2021_story_cloze": lambda raw: {**raw, "label": 1 + raw["label"] % 2},
    "flan2021_sentiment140": lambda raw: {**raw, "polarity": (0, 2, 4)[raw["polarity"] % 3]},
    "flan2021_copa": lambda raw: {**raw, "question": ("cause", "effect")[len(raw["question"]) % 2]},
}


@pytest.fixture(scope="module")
def catalog():
    return load_catalog([ROOT / "tasks" / "flan2021" / f"{name}.yaml" for name in FILES])


@pytest.fixture(scope="module")
def mock_tfds():
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES,
                                policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def test_catalog_shape(catalog):
    assert set(catalog.tasks) == set(EXPECTED)
    for name, spec in catalog.tasks.items():
        assert spec.collection == "flan2021", name
        assert len(spec.templates["opt"]) >= 10 and len(spec.templates["noopt"]) >= 10, name
        assert len(spec.templates["inv"]) >= 1, name
        assert spec.few_shot is not None and spec.few_shot.k == 3, name
        assert len(spec.few_shot.patterns) >= 10, name
        assert set(spec.styles) == {"zs_opt", "zs_noopt", "zs_inv", "fs_opt", "fs_noopt",
                                    "fs_inv"}, name
        assert spec.source.kind == "tfds" and ":" in spec.source.name, name
        # templates are distinct within a group
        for group, templates in spec.templates.items():
            assert len({(t.input, t.target) for t in templates}) == len(templates), (name, group)


def _raw_examples(name, builder_name, split):
    builder = tfds.builder(builder_name)
    ds = builder.as_dataset(split=split, shuffle_files=False)
    fix = REAL_RANGES.get(name, lambda raw: raw)
    return builder.info.features, [fix(to_python(ex)) for ex in tfds.as_numpy(ds)]


def _task_data(name, spec):
    data = TaskData(spec)
    fix = REAL_RANGES.get(name)
    if fix is not None:
        iter_split = data.source.iter_split
        data.source.iter_split = lambda *a: ((i, fix(raw)) for i, raw in iter_split(*a))
    return data


def test_every_template_renders_and_labels_match(catalog, mock_tfds):
    for name, spec in catalog.tasks.items():
        data = _task_data(name, spec)
        assert set(data.source.splits) >= {"train", "validation"}, name
        parsed = [fields for _, fields in data.examples("validation")]
        assert len(parsed) == NUM_EXAMPLES, name
        pool = data.pool
        assert pool, name
        for fields in parsed:
            assert fields["answer"] in fields["options"], name
        # every template of every group, with fixed and with labelled option layouts
        for group, templates in spec.templates.items():
            for i, template in enumerate(templates):
                for fields in parsed[:2]:
                    for layout in (FIXED_OPTIONS, OptionsStyle("Choices:", 3, " ", True)):
                        inputs, targets = fill(template, fields, layout if group == "opt" else None)
                        assert inputs.strip() and targets.strip(), (name, group, i)
                        assert not re.search(r"\{[a-z_]+\}", inputs + targets), (name, group, i)
                        if group == "noopt":
                            assert targets == fields["answer"], (name, i)
        # every style through the renderer, few-shot prompts with exemplars
        for style in spec.styles:
            renderer = Renderer(spec, style)
            for index, fields in enumerate(parsed):
                out = renderer.render(fields, index, pool=pool)
                assert out.inputs and out.targets, (name, style)
                if style.startswith("fs"):
                    assert out.inputs.count(renderer.few_shot.patterns[0].x_y_sep) >= 1
        # labels: the answer is the option that the raw label names
        split, expected = EXPECTED[name]
        assert spec.source.splits["validation"] == split, name
        features, raw = _raw_examples(name, spec.source.name, split)
        assert [fields["answer"] for fields in parsed] == [expected(ex, features) for ex in raw], name


def test_seqio_tasks_build(catalog, mock_tfds):
    """The full seqio pipeline (tokenize, EOS) for the tasks with a parser function and two
    declarative ones, one style each, rotating over the styles. (tf.data costs about a
    second per task; the test above builds and renders every style of every task.)"""
    register_catalog(catalog)
    chosen = sorted(n for n, spec in catalog.tasks.items()
                    if spec.parser.function and n not in REAL_RANGES)
    chosen += ["flan2021_mnli_mismatched", "flan2021_bool_q"]
    for i, name in enumerate(chosen):
        spec = catalog.tasks[name]
        style = spec.styles[i % len(spec.styles)]
        task = seqio.get_mixture_or_task(spec.task_name(style))
        rows = list(task.get_dataset(LENGTHS, split="validation", shuffle=False)
                    .as_numpy_iterator())
        assert len(rows) == NUM_EXAMPLES, (name, style)
        assert all(r["targets"][-1] == 1 and r["_template_type"].decode() == style for r in rows)
        assert len(task.metric_fns) == len(spec.metrics)


def test_parsers_on_real_shaped_examples():
    ex = flan2021.hellaswag({"context": "A man stands", "activity_label": "Fishing",
                             "endings": ["a", "b", "c", "d"], "label": 2})
    assert ex["options"] == ["a", "b", "c", "d"] and ex["answer"] == "c"
    ex = flan2021.story_cloze({"context": "Once.", "endings": ["x", "y"], "label": 2})
    assert ex["answer"] == "y"
    assert flan2021.story_cloze({"context": "c", "endings": ["x", "y"], "label": 1})["answer"] == "x"
    assert flan2021.sentiment140({"text": "t", "polarity": 0})["answer"] == "negative"
    assert flan2021.sentiment140({"text": "t", "polarity": 4})["answer"] == "positive"
    neutral = flan2021.sentiment140({"text": "t", "polarity": 2})
    assert neutral["answer"] == "neutral" and "neutral" in neutral["options"]
    assert flan2021.stsb({"sentence1": "a", "sentence2": "b", "label": 2.4})["answer"] == "2"
    assert flan2021.stsb({"sentence1": "a", "sentence2": "b", "label": 4.6})["answer"] == "5"
    assert flan2021.snli({"premise": "p", "hypothesis": "h", "label": -1})["answer"] == \
        "it is not possible to tell"
    copa = flan2021.copa({"premise": "The glass broke.", "question": "cause", "choice1": "It fell.",
                          "choice2": "It was cold.", "label": 0})
    assert copa["answer"] == "It fell." and copa["connector"] == "because"
    assert flan2021.copa(dict(copa, question="effect", choice1="a", choice2="b",
                              label=1))["connector"] == "so"
    rec = flan2021.record({"passage": "Body.\n@highlight\nOne\n@highlight\nTwo",
                           "query": "@placeholder won the match", "entities": ["Ann", "Bo"],
                           "answers": ["Bo"]})
    assert rec["passage"] == "Body.\n\n- One\n- Two"
    assert rec["query"] == "_____ won the match" and rec["filled_query"] == "Bo won the match"
    assert rec["options"] == ["Ann", "Bo"] and rec["answer"] == "Bo"
    mrc = flan2021.multirc({"paragraph": "<b>Sent 1: </b>Hi there.<br><b>Sent 2: </b>Bye.<br>",
                            "question": "q", "answer": "a", "label": 1})
    assert mrc["paragraph"] == "Hi there. Bye." and mrc["answer"] == "yes"
    wg = flan2021.winogrande({"sentence": "Tom gave _ a book.", "option1": "Ann",
                              "option2": "Bo", "label": 1})
    assert wg["answer"] == "Bo" and wg["filled"] == "Tom gave Bo a book."
    piqa = flan2021.piqa({"goal": "g", "sol1": "s1", "sol2": "s2", "label": 0})
    assert piqa["answer"] == "s1"


def test_stats_counts_the_templates(catalog, capsys):
    tasks_cli._catalog_size(catalog)
    out = capsys.readouterr().out
    assert f"{len(EXPECTED)} task definitions, {6 * len(EXPECTED)} seqio tasks" in out
    opt = [len(s.templates["opt"]) for s in catalog.tasks.values()]
    assert f"templates/opt    min {min(opt)}" in out and min(opt) >= 10
    assert f"over {len(EXPECTED)} task definitions" in out
    assert "flan2021" in out


def test_stats_cli_sees_the_collection(capsys):
    assert tasks_cli.main(["stats"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"collection flan2021: (\d+) task definitions", out)
    assert found and int(found.group(1)) >= len(EXPECTED)
