"""The Dialog collection of Flan 2022 (tasks/dialog: wiki_dialog and qrecc) over the real
TFDS builders under tfds.testing.mock_data.

Random mock data breaks WikiDialog's invariants (one author number per utterance, the
writer's turns being passage sentences), so the builders are served hand-written examples
in the real TFDS structure, different ones for the train split (few-shot exemplars) and
the evaluation split."""

import random

import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from flan_jax.data import mixing, parsers
from flan_jax.data.collections import dialog
from flan_jax.data.datasource import FlanDataSource, TaskData
from flan_jax.data.registry import CATALOG_DIR, load_catalog, register_catalog
from flan_jax.data.schema import VARIANTS, ParserSpec
from flan_jax.data.templates import Renderer, fill, pick_variant
from flan_jax.errors import DataFormatError

LENGTHS = {"inputs": 2048, "targets": 512}
STYLES = ("zs_noopt", "fs_noopt", "zs_inv", "fs_inv")
SOURCES = {"dialog_wiki_dialog": "wiki_dialog/OQ:1.0.0", "dialog_qrecc": "q_re_cc:1.0.0"}
EVAL_SPLIT = {"dialog_wiki_dialog": "validation", "dialog_qrecc": "test"}


def wiki(title, pairs, reader=0, pid="p"):
    """A WikiDialog example: (question, sentence) pairs; the reader has author `reader`."""
    sentences = [s for _, s in pairs]
    utterances = [u for pair in pairs for u in pair]
    return {"title": title, "pid": pid, "passage": " ".join(sentences), "sentences": sentences,
            "utterances": utterances, "author_num": [reader, 1 - reader] * len(pairs)}


def qrecc(context, question, answer, rewrite="", conversation=1, turn=None):
    return {"context": context, "question": question, "question_rewrite": rewrite or question,
            "answer": answer, "answer_url": "https://example.org/page", "source": "quac",
            "conversation_id": conversation, "turn_id": turn or len(context) // 2 + 1}


REAL = {
    ("wiki_dialog", "validation"): [
        wiki("Honeybee", [
            ("What are honeybees known for?", "Honeybees are known for making honey and wax."),
            ("Where do they live?", "Most colonies live in hollow trees or in hives kept by people."),
            ("How many bees are in a colony?", "A strong colony can hold about fifty thousand workers."),
            ("Who lays the eggs?", "A single queen lays nearly all of the eggs."),
            ("How do workers share news about flowers?", "Foragers perform a waggle dance that points to the food."),
        ], pid="v0"),
        wiki("Lighthouse", [  # the writer is author 0 here
            ("Why were lighthouses built?", "Lighthouses warned ships away from rocks at night."),
            ("What made the light?", "Early towers burned wood or coal in open fires."),
            ("Did that change later?", "Fresnel lenses later focused lamp light into strong beams."),
        ], reader=1, pid="v1"),
        wiki("Basalt", [
            ("What kind of rock is basalt?", "Basalt is a dark volcanic rock."),
            ("How does it form?", "It forms when lava rich in iron cools quickly."),
            ("Where is it common?", "It makes up most of the ocean floor."),
            ("Is it used for anything?", "Crushed basalt is used in roads and concrete."),
        ], pid="v2"),
    ],
    ("wiki_dialog", "train"): [
        wiki("Violin", [
            ("How many strings does a violin have?", "A violin has four strings tuned in fifths."),
            ("What is the bow made of?", "The bow is strung with horsehair."),
        ], pid="t0"),
        wiki("Glacier", [
            ("What is a glacier?", "A glacier is a slow river of ice."),
            ("How fast does it move?", "Many glaciers move less than a metre per day."),
            ("What do they leave behind?", "Retreating glaciers leave piles of rock called moraines."),
        ], pid="t1"),
    ],
    ("q_re_cc", "test"): [
        qrecc(["Who wrote the novel Frankenstein?", "Mary Shelley wrote it.",
               "When was it published?", "It first appeared in 1818."],
              "Was it popular?", "It sold well and was soon adapted for the stage.",
              rewrite="Was the novel Frankenstein popular?", conversation=7, turn=3),
        qrecc([], "What is the tallest mountain in Africa?", "Kilimanjaro, at about 5,895 metres.",
              conversation=8, turn=1),
        qrecc(["What do pandas eat?", "Almost only bamboo."], "How much per day?",
              "An adult eats between twelve and thirty-eight kilograms.",
              rewrite="How much bamboo does a panda eat per day?", conversation=9, turn=2),
    ],
    ("q_re_cc", "train"): [
        qrecc([], "What is the capital of Peru?", "Lima is the capital.", conversation=1),
        qrecc(["Who painted the Mona Lisa?", "Leonardo da Vinci painted it."],
              "Where is it now?", "It hangs in the Louvre in Paris.",
              rewrite="Where is the Mona Lisa now?", conversation=2, turn=2),
    ],
}


def _split_name(split):
    name = str(split)
    return "train" if name.startswith("train") else name.split("[")[0]


def _real_as_dataset(self, split, *args, **kwargs):
    del args, kwargs
    examples = REAL[(self.name, _split_name(split))]
    return tf.data.Dataset.from_generator(lambda: iter(examples),
                                          output_signature=self.info.features.get_tensor_spec())


def mock(examples=None):
    if examples is None:
        return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                      as_dataset_fn=_real_as_dataset)

    def as_dataset(self, split, *args, **kwargs):
        del split, args, kwargs
        return tf.data.Dataset.from_generator(
            lambda: iter(examples), output_signature=self.info.features.get_tensor_spec())

    return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_dataset_fn=as_dataset)


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog([CATALOG_DIR / "dialog"]))


def builder_name(task):
    return SOURCES[task].split("/")[0].split(":")[0]


def raw(task, split="validation"):
    return REAL[(builder_name(task), EVAL_SPLIT[task] if split == "validation" else split)]


def rows(name, split="validation", **kwargs):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split=split, shuffle=False, **kwargs)
    return [{k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
            for r in ds.as_numpy_iterator()]


def candidates(fields):
    return fields.get(VARIANTS, [fields])


def expected_candidates(task, example):
    """(history turns, question, next turn) of every candidate, from the raw example alone."""
    if task == "dialog_qrecc":
        turns = example["context"] + [example["question"]]
        return [(turns[:-1], example["question"], example["answer"])]
    u = example["utterances"]
    return [(u[: t - 1], u[t - 1], u[t]) for t in range(1, len(u), 2)]


# --- the catalog ---------------------------------------------------------------------------

def test_catalog_shape(catalog):
    assert {n: s.source.name for n, s in catalog.tasks.items()} == SOURCES
    assert catalog.tasks["dialog_wiki_dialog"].source.splits == {"train": "train",
                                                                 "validation": "validation"}
    assert catalog.tasks["dialog_qrecc"].source.splits == {"train": "train", "validation": "test"}
    for spec in catalog.tasks.values():
        assert spec.collection == "dialog" and spec.metrics == ("rouge",)
        assert set(spec.styles) == set(STYLES)
        assert len(spec.templates["noopt"]) >= 10 and len(spec.templates["inv"]) >= 10
        assert set(spec.templates) == {"noopt", "inv"}
        for group in spec.templates.values():
            assert len({t.input for t in group}) == len(group), spec.name
        for t in spec.templates["noopt"]:
            assert t.target == "{next_turn}" and "{passage}" not in t.input
        for t in spec.templates["inv"]:
            assert t.target in ("{question}", "{rewrite}") and "{next_turn}" in t.input
            assert "{history}" not in t.input  # the history ends with the question
            assert "{rewrite}" not in t.input and "{question}" not in t.input
        assert len(spec.few_shot.patterns) >= 8 and spec.few_shot.k == 2


def test_builders_versions_and_features_exist_in_tfds():
    features = {
        "dialog_wiki_dialog": {"title", "pid", "passage", "sentences", "utterances", "author_num"},
        "dialog_qrecc": {"context", "question", "question_rewrite", "answer", "answer_url",
                         "conversation_id", "turn_id", "source"},
    }
    with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
        for task, name in SOURCES.items():
            builder = tfds.builder(name)
            assert str(builder.version) == name.rpartition(":")[2]
            assert set(builder.info.features) == features[task]
        with pytest.raises(Exception, match="q_re_cc"):
            tfds.builder("qrecc:1.0.0")  # TFDS names the QReCC builder q_re_cc


def test_mixture_rates(catalog):
    counts = {"dialog_wiki_dialog": 11_000_000, "dialog_qrecc": 63_501}
    shares = mixing.shares(catalog, "dialog_submix", lambda n: counts[n.rsplit("_", 2)[0]])
    assert set(shares) == set(catalog.task_styles())
    wiki_part = 200_000 / (200_000 + 63_501)  # the cap applies to wiki_dialog only
    for name, share in shares.items():
        style_weight = (1 if "noopt" in name else 0.3) / 2.6
        part = wiki_part if name.startswith("dialog_wiki_dialog") else 1 - wiki_part
        assert share == pytest.approx(style_weight * part), name
    assert sum(shares.values()) == pytest.approx(1.0)
    assert catalog.mixtures["dialog_zs"].cap == 200_000
    assert catalog.members("dialog_fs_inv") == ["dialog_qrecc_fs_inv", "dialog_wiki_dialog_fs_inv"]


# --- rendering -----------------------------------------------------------------------------

@pytest.mark.parametrize("task", sorted(SOURCES))
def test_parsed_candidates_match_the_raw_dialog(catalog, task):
    with mock():
        parsed = list(TaskData(catalog.tasks[task]).examples("validation"))
    assert [i for i, _ in parsed] == list(range(len(raw(task))))
    for (_, fields), example in zip(parsed, raw(task)):
        got = candidates(fields)
        want = expected_candidates(task, example)
        assert len(got) == len(want)
        for c, (before, question, nxt) in zip(got, want):
            assert c["next_turn"] == nxt and c["question"] == question
            assert c["next_speaker"] == "Assistant"
            lines = c["history"].splitlines()
            assert [line.split(": ", 1)[1] for line in lines] == [*before, question]
            assert [line.split(": ", 1)[0] for line in lines] == [
                ("User", "Assistant")[i % 2] for i in range(len(lines))]
            assert c["earlier_history"] == ("\n".join(lines[:-1]) or dialog.START)


@pytest.mark.parametrize("task", sorted(SOURCES))
def test_every_template_renders_every_candidate_without_leaking_the_target(catalog, task):
    spec = catalog.tasks[task]
    with mock():
        parsed = list(TaskData(spec).examples("validation"))
    for _, fields in parsed:
        for variant in candidates(fields):
            values = pick_variant({**fields, VARIANTS: [variant]}, random.Random(0))
            for group, templates in spec.templates.items():
                for i, template in enumerate(templates):
                    inputs, targets = fill(template, values, None)
                    want = {"{next_turn}": variant["next_turn"], "{question}": variant["question"],
                            "{rewrite}": values.get("rewrite")}[template.target]
                    assert targets == want and inputs.strip(), (task, group, i)
                    assert targets not in inputs, (task, group, i)
                    assert "{" not in inputs and "_variants" not in inputs
                    if group == "inv":
                        assert variant["next_turn"] in inputs, (task, group, i)


@pytest.mark.parametrize("task", sorted(SOURCES))
def test_every_style_builds_through_seqio(catalog, task):
    """Tokenized, EOS appended, metadata attached; the target is one candidate's next turn
    (or, inverted, its question), never in the inputs; few-shot prompts carry exemplars
    from the train split under one of the task's patterns."""
    spec = catalog.tasks[task]
    with mock():
        parsed = list(TaskData(spec).examples("validation"))
        for style in spec.styles:
            name = spec.task_name(style)
            out = rows(name)
            assert [r["_example_index"] for r in out] == list(range(len(parsed))), name
            for row, (_, fields) in zip(out, parsed):
                assert row["_task_name"] == name and row["_template_type"] == style
                assert row["targets"][-1] == 1 and row["inputs"].size > 1
                target, inputs = row["targets_pretokenized"], row["inputs_pretokenized"]
                assert target not in inputs, (name, row["_example_index"])
                if style.endswith("noopt"):
                    assert target in [c["next_turn"] for c in candidates(fields)]
                else:  # the question of the candidate whose reply the inputs show
                    shown = [c for c in candidates(fields) if c["next_turn"] in inputs]
                    assert len(shown) >= 1
                    assert target in {c["question"] for c in shown} | {fields.get("rewrite")}
                if style.startswith("fs"):
                    assert inputs.startswith(tuple(p.input_prefix for p in spec.few_shot.patterns))
                    train = [u for ex in raw(task, "train") for u in
                             ex.get("utterances", ex.get("context", []) + [ex.get("answer")])]
                    assert any(u in inputs for u in train), name  # an exemplar is shown


def test_inversion_target_is_the_question_before_the_shown_reply(catalog):
    spec = catalog.tasks["dialog_wiki_dialog"]
    with mock():
        out = rows(spec.task_name("zs_inv"))
    for row, example in zip(out, raw("dialog_wiki_dialog")):
        u = example["utterances"]
        answers = [t for t in range(1, len(u), 2) if u[t] in row["inputs_pretokenized"]]
        assert answers
        assert row["targets_pretokenized"] == u[answers[-1] - 1]


def test_turn_choice_is_seeded_by_example_and_epoch(catalog):
    """Same seed: same turn, in every run; another seed or epoch: another turn for some
    examples. Every candidate turn gets chosen."""
    spec = catalog.tasks["dialog_wiki_dialog"]
    with mock():
        fields = next(iter(TaskData(spec).examples("validation")))[1]
        data = TaskData(spec)
        first = list(FlanDataSource(data, "zs_noopt", seqio.ByteVocabulary()).rendered("validation"))
        again = list(FlanDataSource(TaskData(spec), "zs_noopt",
                                    seqio.ByteVocabulary()).rendered("validation"))
    assert first == again

    def chosen(seed, epoch=0, style="zs_noopt"):
        renderer = Renderer(spec, style, seed=seed)
        return [renderer.render(fields, i, epoch).targets for i in range(40)]

    assert chosen(0) == chosen(0) and chosen(3, 2) == chosen(3, 2)
    assert chosen(0) != chosen(1)
    assert sum(a != b for a, b in zip(chosen(0), chosen(1))) >= 10
    assert chosen(0) != chosen(0, epoch=1)
    assert set(chosen(0)) == {c["next_turn"] for c in fields[VARIANTS]}
    assert set(chosen(0, style="zs_inv")) == {c["question"] for c in fields[VARIANTS]}


def test_qrecc_builds_on_random_mock_data(catalog):
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        out = rows("dialog_qrecc_zs_noopt")
        raws = list(tfds.as_numpy(tfds.builder("q_re_cc:1.0.0").as_dataset(
            split="test", shuffle_files=False)))
    assert len(out) == 3
    for row, ex in zip(out, raws):
        assert row["targets_pretokenized"] == " ".join(ex["answer"].decode().split()) or (
            row["targets_pretokenized"] == dialog.NO_ANSWER)


# --- malformed examples --------------------------------------------------------------------

def test_empty_dialog_is_a_clear_error_naming_task_and_example(catalog):
    spec = catalog.tasks["dialog_wiki_dialog"]
    bad = [REAL[("wiki_dialog", "validation")][0],
           dict(REAL[("wiki_dialog", "validation")][1], utterances=[], author_num=[], pid="x9")]
    with mock(bad):
        data = TaskData(spec)
        with pytest.raises(DataFormatError, match=r"task 'dialog_wiki_dialog' \(TFDS "
                           r"wiki_dialog/OQ:1\.0\.0.*split 'validation'.*validation example 1: "
                           r".*'x9' has an empty dialog"):
            list(data.examples("validation"))
        with pytest.raises(Exception, match="dialog_wiki_dialog.*example 1.*empty dialog"):
            rows(spec.task_name("zs_noopt"))

    qspec = catalog.tasks["dialog_qrecc"]
    with mock([qrecc([], "  ", "An answer.", conversation=4, turn=1)]):
        with pytest.raises(DataFormatError, match=r"task 'dialog_qrecc' .*validation example 0: "
                           r".*conversation 4, turn 1 has an empty question and no context"):
            list(TaskData(qspec).examples("validation"))


def test_wiki_dialog_parser_checks_and_roles():
    ok = REAL[("wiki_dialog", "validation")][2]
    with pytest.raises(DataFormatError, match="8 utterances but 7 author numbers"):
        dialog.wiki_dialog(dict(ok, author_num=ok["author_num"][:-1]))
    with pytest.raises(DataFormatError, match=r"empty utterance \(turn 2\)"):
        dialog.wiki_dialog(dict(ok, utterances=ok["utterances"][:2] + [" "] + ok["utterances"][3:]))
    with pytest.raises(DataFormatError, match="no answer that follows a question"):
        dialog.wiki_dialog(dict(ok, author_num=[1] * 8))
    with pytest.raises(DataFormatError, match="no field 'utterances'"):
        dialog.wiki_dialog({k: v for k, v in ok.items() if k != "utterances"})
    # The writer is found by its passage sentences, whatever its author number ...
    flipped = dialog.wiki_dialog(dict(ok, author_num=[7, 3] * 4))
    assert [c["next_turn"] for c in flipped[VARIANTS]] == ok["sentences"]
    # ... and, when no utterance is a sentence, is the author of the last utterance.
    unmatched = dialog.wiki_dialog(dict(ok, sentences=["Something else."]))
    assert [c["next_turn"] for c in unmatched[VARIANTS]] == ok["sentences"]
    # Inner line breaks and runs of spaces never split a turn over lines.
    messy = dict(ok, utterances=["What kind of\nrock  is basalt? "] + ok["utterances"][1:])
    first = dialog.wiki_dialog(messy)[VARIANTS][0]
    assert first["history"] == "User: What kind of rock is basalt?"
    assert first["earlier_history"] == dialog.START


def test_qrecc_parser_speakers_rewrite_and_missing_answer():
    out = dialog.qrecc(REAL[("q_re_cc", "test")][0])
    assert out["history"].splitlines() == [
        "User: Who wrote the novel Frankenstein?", "Assistant: Mary Shelley wrote it.",
        "User: When was it published?", "Assistant: It first appeared in 1818.",
        "User: Was it popular?"]
    assert out["rewrite"] == "Was the novel Frankenstein popular?"
    assert VARIANTS not in out  # one candidate: the example's own answer
    no_answer = dialog.qrecc(qrecc(["Hi?", "Hello."], "Who won?", "  ", rewrite=" "))
    assert no_answer["next_turn"] == dialog.NO_ANSWER and no_answer["rewrite"] == "Who won?"
    odd = dialog.qrecc(qrecc(["stray", "Q1?", "A1."], "Q2?", "A2."))  # counted back from the end
    assert odd["earlier_history"].splitlines()[-2:] == ["User: Q1?", "Assistant: A1."]
    with pytest.raises(DataFormatError, match=r"empty context turn \(1\)"):
        dialog.qrecc(qrecc(["Q1?", ""], "Q2?", "A2."))


# --- the generic `_variants` mechanism -----------------------------------------------------

def test_variants_are_checked_and_picked_without_touching_other_tasks(monkeypatch):
    module = type(dialog)("fake_variants")
    module.good = lambda raw: {"a": "x", VARIANTS: [{"b": "1"}, {"b": "2"}]}
    module.empty = lambda raw: {"a": "x", VARIANTS: []}
    module.partial = lambda raw: {"a": "x", VARIANTS: [{"b": "1"}, {"c": "2"}]}
    monkeypatch.setitem(__import__("sys").modules, "fake_variants", module)
    spec = ParserSpec(function="fake_variants:good", fields=("a", "b"))
    fields = parsers.make_parser(spec)({})
    assert {pick_variant(fields, random.Random(i))["b"] for i in range(20)} == {"1", "2"}
    with pytest.raises(DataFormatError, match="non-empty list"):
        parsers.make_parser(ParserSpec(function="fake_variants:empty", fields=("a", "b")))({})
    with pytest.raises(DataFormatError, match="field 'b' is missing from some"):
        parsers.make_parser(ParserSpec(function="fake_variants:partial", fields=("a", "b")))({})
    plain, rng = {"a": "x"}, random.Random(5)
    state = rng.getstate()
    assert pick_variant(plain, rng) is plain and rng.getstate() == state


def test_dialog_submix_packs_through_the_feature_converter(catalog):
    with mock():
        ds = seqio.get_dataset("dialog_submix", {"inputs": 1024, "targets": 128},
                               dataset_split="train", shuffle=True, seed=3, num_epochs=1,
                               feature_converter=seqio.EncDecFeatureConverter(pack=True))
        batches = list(ds.take(3).as_numpy_iterator())
    assert batches
    for ex in batches:
        assert ex["encoder_input_tokens"].shape == (1024,)
        assert ex["decoder_target_tokens"].shape == (128,)
