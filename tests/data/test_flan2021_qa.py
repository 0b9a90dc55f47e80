"""Flan 2021 QA, reading comprehension, commonsense-choice and summarization tasks
(tasks/flan2021/qa_*.yaml, completion_lambada.yaml, summarization_*.yaml) over the real
TFDS builders under tfds.testing.mock_data.

Random mock data breaks the invariants some datasets rely on (CoQA's questions and
answers have equal length, UnifiedQA inputs carry "(A) ... (B) ..." options, ...); those
builders are served hand-written examples in the real TFDS structure instead."""

import dataclasses

import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from flan_jax.data import mixing
from flan_jax.data.collections import flan2021_qa as qa
from flan_jax.data.datasource import TaskData
from flan_jax.data.registry import CATALOG_DIR, load_catalog, register_catalog
from flan_jax.data.templates import OptionsStyle, Renderer, fill
from flan_jax.errors import DataFormatError

FILES = ["qa_closed_book", "qa_arc", "qa_squad", "qa_reading", "qa_choice", "completion_lambada",
         "summarization_news", "summarization_dialogue_email", "summarization_opinion_abstracts"]
PATHS = [CATALOG_DIR / "flan2021" / f"{f}.yaml" for f in FILES]
NUM_EXAMPLES = 3
LENGTHS = {"inputs": 2048, "targets": 512}

SOURCES = {
    "flan2021_natural_questions": "natural_questions_open:1.0.0",
    "flan2021_trivia_qa": "trivia_qa/rc:1.1.0",
    "flan2021_arc_challenge": "ai2_arc/ARC-Challenge:1.0.0",
    "flan2021_arc_easy": "ai2_arc/ARC-Easy:1.0.0",
    "flan2021_squad_v1": "squad/v1.1:3.0.0",
    "flan2021_squad_v2": "squad/v2.0:3.0.0",
    "flan2021_drop": "drop:2.0.0",
    "flan2021_quac": "quac:1.0.0",
    "flan2021_coqa": "coqa:1.0.0",
    "flan2021_cosmos_qa": "cosmos_qa:1.0.0",
    "flan2021_openbookqa": "openbookqa:0.1.0",
    "flan2021_ai2_science_middle": "unified_qa/ai2_science_middle:1.0.0",
    "flan2021_lambada": "lambada:1.0.0",
    "flan2021_aeslc": "aeslc:1.0.0",
    "flan2021_cnn_dailymail": "cnn_dailymail:3.4.0",
    "flan2021_gigaword": "gigaword:1.2.0",
    "flan2021_multi_news": "multi_news:2.1.0",  # TFDS 4.9.10 refuses 1.0.0
    "flan2021_newsroom": "newsroom:1.0.0",
    "flan2021_samsum": "samsum:1.0.0",
    "flan2021_xsum": "xsum:1.1.0",
    "flan2021_opinion_abstracts_rotten_tomatoes": "opinion_abstracts/rotten_tomatoes:1.0.0",
    "flan2021_opinion_abstracts_idebate": "opinion_abstracts/idebate:1.0.0",
}
CHOICE_TASKS = {"flan2021_arc_challenge", "flan2021_arc_easy", "flan2021_cosmos_qa",
                "flan2021_openbookqa", "flan2021_ai2_science_middle"}
# One task per YAML file also goes through the seqio pipeline (its time adds up).
SEQIO_TASKS = {"flan2021_trivia_qa", "flan2021_arc_challenge", "flan2021_squad_v2", "flan2021_coqa",
               "flan2021_ai2_science_middle", "flan2021_lambada", "flan2021_multi_news",
               "flan2021_samsum", "flan2021_opinion_abstracts_rotten_tomatoes"}
MANUAL_DATA = {"flan2021_newsroom", "flan2021_samsum", "flan2021_xsum"}


def _first(items):
    return items[0] if items else ""


def _numbered(items):
    return "\n".join(f"{i}. {x}" for i, x in enumerate(items, 1))


# Raw TFDS example -> the values that template targets may name, computed here from the raw
# fields independently of the parsers.
EXPECTED = {
    "flan2021_natural_questions": lambda r: {"answer": r["answer"][0], "question": r["question"]},
    "flan2021_trivia_qa": lambda r: {"answer": r["answer"]["value"].strip(),
                                     "question": r["question"].strip()},
    "flan2021_arc_challenge": lambda r: {
        "answer": r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])
                                       if r["answerKey"] in r["choices"]["label"] else r["answerKey"]],
        "question": r["question"]},
    "flan2021_squad_v1": lambda r: {"answer": r["answers"]["text"][0], "question": r["question"]},
    "flan2021_squad_v2": lambda r: {
        "answer": "unanswerable" if r["is_impossible"] or not r["answers"]["text"]
        else r["answers"]["text"][0], "question": r["question"].strip()},
    "flan2021_drop": lambda r: {"answer": r["answer"].strip() or _first(r["validated_answers"]),
                                "question": r["question"].strip()},
    "flan2021_quac": lambda r: {
        "answer": "unanswerable" if r["orig_answer"]["text"] == "CANNOTANSWER"
        else r["orig_answer"]["text"].strip(), "question": r["question"].strip()},
    "flan2021_coqa": lambda r: {
        "answers": _numbered(r["answers"]["input_text"]), "questions": _numbered(r["questions"]),
        "last_answer": r["answers"]["input_text"][-1], "last_question": r["questions"][-1]},
    "flan2021_cosmos_qa": lambda r: {"answer": r[f"answer{r['label']}"].strip(),
                                     "question": r["question"].strip()},
    "flan2021_openbookqa": lambda r: {
        "answer": r["question"]["choice_" + "ABCD"[r["answerKey"]]].strip(),
        "question": r["question"]["stem"].strip()},
    "flan2021_ai2_science_middle": lambda r: {"answer": r["output"],
                                              "question": r["input"].split("\\n")[0].strip()},
    "flan2021_lambada": lambda r: {"answer": r["passage"].split()[-1],
                                   "context": r["passage"].rsplit(" ", 1)[0]},
    "flan2021_aeslc": lambda r: {"subject": r["subject_line"], "body": r["email_body"]},
    "flan2021_cnn_dailymail": lambda r: {"highlights": r["highlights"], "article": r["article"]},
    "flan2021_gigaword": lambda r: {"summary": r["summary"], "document": r["document"]},
    "flan2021_multi_news": lambda r: {
        "summary": r["summary"].strip(),
        "document": "\n\n".join(d.strip() for d in r["document"].split("|||||") if d.strip())},
    "flan2021_newsroom": lambda r: {"summary": r["summary"], "text": r["text"]},
    "flan2021_samsum": lambda r: {"summary": r["summary"], "dialogue": r["dialogue"]},
    "flan2021_xsum": lambda r: {"summary": r["summary"], "document": r["document"]},
    "flan2021_opinion_abstracts_rotten_tomatoes": lambda r: {
        "consensus": r["_critic_consensus"],
        "reviews": "\n".join("- " + v for _, v in sorted(
            zip(r["_critics"]["key"], r["_critics"]["value"]), key=lambda kv: int(kv[0])))},
    "flan2021_opinion_abstracts_idebate": lambda r: {
        "claim": r["_claim"],
        "argument": " ".join(v for _, v in sorted(zip(r["_argument_sentences"]["key"],
                                                       r["_argument_sentences"]["value"]),
                                                   key=lambda kv: int(kv[0])))},
}
EXPECTED["flan2021_arc_easy"] = EXPECTED["flan2021_arc_challenge"]

# Hand-written examples in the real TFDS structure (as flan_jax.data.sources.to_python gives
# them), for the builders whose random mock data violates the dataset's invariants.
REAL = {
    "coqa": [
        {"source": "mctest", "story": "Mia planted three tomato seeds in April. Only two sprouted, "
         "and by July she had picked twelve tomatoes, which she gave to her grandmother.",
         "questions": ["What did Mia plant?", "How many?", "How many sprouted?",
                       "Who got the tomatoes?"],
         "answers": {"input_text": ["tomato seeds", "three", "two", "her grandmother"],
                     "answer_start": [4, 4, 40, 100], "answer_end": [20, 20, 60, 140]}},
        {"source": "cnn", "story": "The ferry left the harbour at noon and reached the island "
         "two hours later.", "questions": ["When did the ferry leave?"],
         "answers": {"input_text": ["at noon"], "answer_start": [30], "answer_end": [37]}},
    ],
    "unified_qa": [
        {"input": "Which of these is a renewable resource? \\n (A) coal (B) wind (C) oil (D) natural gas",
         "output": "wind"},
        {"input": "What do plants mostly take in from the air? \\n (A) oxygen (B) carbon dioxide "
         "(C) nitrogen", "output": "carbon dioxide"},
    ],
    "lambada": [
        {"passage": "She wrapped the present in red paper and tied it with a bow. When her "
         "brother opened it, he found the watch he had wanted all year. He thanked his sister"},
        {"passage": "The dog barked at the mailman every morning until the mailman brought him a "
         "biscuit"},
    ],
    "opinion_abstracts/rotten_tomatoes": [
        {"_movie_name": "The Long Harbour", "_movie_id": "m/the_long_harbour",
         "_critic_consensus": "Slow but rewarding, with a lead performance worth the wait.",
         "_critics": {"key": ["10", "2", "1"],
                      "value": ["Patience pays off.", "The pacing drags.",
                                "A quietly great lead performance."]}},
        {"_movie_name": "Robot Picnic", "_movie_id": "m/robot_picnic",
         "_critic_consensus": "Loud, silly and over too soon.",
         "_critics": {"key": ["0", "1"], "value": ["Fun for kids.", "Exhausting noise."]}},
    ],
    "opinion_abstracts/idebate": [
        {"_debate_name": "Ban homework in primary schools", "_claim_id": "c-17",
         "_claim": "Homework widens the gap between pupils.",
         "_argument_sentences": {"key": ["1", "0"],
                                 "value": ["Richer families can pay for tutors.",
                                           "Not every child has help at home."]}},
        {"_debate_name": "Lower the voting age to 16", "_claim_id": "c-3",
         "_claim": "Sixteen-year-olds already carry adult duties.",
         "_argument_sentences": {"key": ["0", "1", "2"],
                                 "value": ["Many work and pay tax.", "Some serve in the army.",
                                           "They should have a say too."]}},
    ],
}
REAL_TASKS = {"flan2021_coqa": "coqa", "flan2021_ai2_science_middle": "unified_qa",
              "flan2021_lambada": "lambada",
              "flan2021_opinion_abstracts_rotten_tomatoes": "opinion_abstracts/rotten_tomatoes",
              "flan2021_opinion_abstracts_idebate": "opinion_abstracts/idebate"}


def _real_as_dataset(self, *args, **kwargs):
    del args, kwargs
    key = self.name if self.name != "opinion_abstracts" else f"{self.name}/{self.builder_config.name}"
    examples = REAL[key]
    return tf.data.Dataset.from_generator(lambda: iter(examples),
                                          output_signature=self.info.features.get_tensor_spec())


@pytest.fixture(scope="module")
def catalog():
    return register_catalog(load_catalog(PATHS))


def mock(task):
    if task in REAL_TASKS:
        return tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                                      as_dataset_fn=_real_as_dataset)
    return tfds.testing.mock_data(num_examples=NUM_EXAMPLES, policy=tfds.testing.MockPolicy.USE_CODE)


def raw_examples(spec, split="validation"):
    builder = tfds.builder(spec.source.name)
    ds = builder.as_dataset(split=spec.source.splits[split], shuffle_files=False)
    from flan_jax.data.sources import to_python
    return [to_python(ex) for ex in tfds.as_numpy(ds)]


def rows(name, split="validation"):
    ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, split=split, shuffle=False)
    return [{k: v.decode() if isinstance(v, bytes) else v for k, v in r.items()}
            for r in ds.as_numpy_iterator()]


def test_catalog_shape(catalog):
    assert {n: s.source.name for n, s in catalog.tasks.items()} == SOURCES
    for spec in catalog.tasks.values():
        assert spec.collection == "flan2021"
        groups = spec.templates
        assert len(groups["noopt"]) >= 10 and len(groups["inv"]) >= 5, spec.name
        assert ("opt" in groups) == (spec.name in CHOICE_TASKS), spec.name
        if "opt" in groups:
            assert len(groups["opt"]) >= 10
        for group in groups.values():
            assert len({t.input for t in group}) == len(group), spec.name  # no duplicates
        assert len(spec.few_shot.patterns) >= 10 and 1 <= spec.few_shot.k <= 3
        expected_metric = ("accuracy" if spec.name in CHOICE_TASKS | {"flan2021_lambada"}
                           else "rouge" if spec.file.split("/")[-1].startswith("summarization")
                           else "squad")
        assert spec.metrics == (expected_metric,), spec.name
        assert {"train", "validation"} <= set(spec.source.splits)


def test_builders_and_versions_exist_in_tfds():
    with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
        for name in SOURCES.values():
            builder = tfds.builder(name)
            assert str(builder.version) == name.rpartition(":")[2]
    with pytest.raises(Exception, match="2.1.0"):
        tfds.builder("multi_news:1.0.0")


@pytest.mark.parametrize("task", sorted(SOURCES))
def test_every_template_renders_with_targets_from_raw_fields(catalog, task):
    """Each template of each group is filled with every mocked validation example; its
    target equals the value derived from the raw TFDS example."""
    spec = catalog.tasks[task]
    with mock(task):
        raws = raw_examples(spec)
        parsed = list(TaskData(spec).examples("validation"))
    assert len(raws) == len(parsed) >= 1
    for (_, fields), raw in zip(parsed, raws):
        expected = EXPECTED[task](raw)
        for group, templates in spec.templates.items():
            for i, template in enumerate(templates):
                options = OptionsStyle(marker=i % 10) if group == "opt" else None
                inputs, targets = fill(template, fields, options)
                assert targets == template.target.format_map(expected), (task, group, i)
                assert targets.strip() and inputs.strip(), (task, group, i)
                if group == "opt":
                    assert all(o in inputs for o in fields["options"])
                    assert fields["answer"] in fields["options"]


@pytest.mark.parametrize("task", sorted(SOURCES))
def test_every_style_renders(catalog, task):
    """Every style renders every mocked validation example with a target taken from the raw
    example: all styles in Python, and for one task of each YAML file a few-shot style
    through the seqio pipeline (tokenized, EOS appended, metadata attached)."""
    spec = catalog.tasks[task]
    with mock(task):
        raws = raw_examples(spec)
        expected = [EXPECTED[task](raw) for raw in raws]
        data = TaskData(spec)
        examples, pool = list(data.examples("validation")), data.pool
        for style in spec.styles:
            renderer = Renderer(spec, style)
            for (index, fields), exp in zip(examples, expected):
                out = renderer.render(fields, index, pool=pool)
                assert out.targets == renderer.templates[out.template_idx].target.format_map(exp)
        for style in spec.styles[-1:] if task in SEQIO_TASKS else ():
            name = spec.task_name(style)
            out = rows(name)
            assert style.startswith("fs")
            assert [r["_example_index"] for r in out] == list(range(len(raws))), name
            for row, exp in zip(out, expected):
                assert row["_task_name"] == name and row["_template_type"] == style
                assert row["targets"][-1] == 1 and row["inputs"].size > 1
                template = spec.templates[style[3:]][row["_template_idx"]]
                assert row["targets_pretokenized"] == template.target.format_map(exp)
                if style.startswith("fs"):
                    prefixes = tuple(p.input_prefix for p in spec.few_shot.patterns)
                    assert row["inputs_pretokenized"].startswith(prefixes)


def test_every_few_shot_pattern_renders(catalog):
    """Each file's few-shot patterns, one at a time, with exemplars from the mocked train
    split: exemplar blocks joined by the pattern's separator, the query last."""
    for task in ("flan2021_natural_questions", "flan2021_arc_easy", "flan2021_squad_v1",
                 "flan2021_drop", "flan2021_cosmos_qa", "flan2021_lambada",
                 "flan2021_cnn_dailymail", "flan2021_aeslc", "flan2021_opinion_abstracts_idebate"):
        spec = catalog.tasks[task]
        with mock(task):
            data = TaskData(spec)
            pool = data.pool
            query = next(iter(data.examples("validation")))[1]
        for pattern in spec.few_shot.patterns:
            one = dataclasses.replace(spec, few_shot=dataclasses.replace(spec.few_shot,
                                                                         patterns=(pattern,)))
            out = Renderer(one, "fs_noopt").render(query, 10_000, pool=pool)
            inputs, targets = fill(spec.templates["noopt"][out.template_idx], query, None)
            last = pattern.input_prefix + inputs + pattern.x_y_sep + pattern.target_prefix.rstrip()
            assert out.inputs.endswith(pattern.example_sep + last), (task, pattern)
            assert out.inputs.startswith(pattern.input_prefix)
            assert len(out.inputs) > len(pattern.example_sep + last)  # at least one exemplar
            assert out.targets == targets


def test_manual_builders_are_reported_missing(catalog):
    tasks = [seqio.get_mixture_or_task(catalog.tasks[t].task_name("zs_noopt")) for t in MANUAL_DATA]
    missing = mixing.find_missing(tasks, "train")
    for task in MANUAL_DATA:
        name = catalog.tasks[task].task_name("zs_noopt")
        assert SOURCES[task] in missing[name]


# --- parser functions on hand-written raw examples in the real TFDS structure --------------

def test_trivia_qa_answer_and_aliases():
    raw = {"question": "Which planet is known as the Red Planet?", "question_id": "tc_1",
           "question_source": "http://quiz", "entity_pages": {}, "search_results": {},
           "answer": {"value": "Mars", "aliases": ["Mars", "Planet Mars", "Fourth planet"],
                      "normalized_value": "mars", "normalized_aliases": ["mars"],
                      "matched_wiki_entity_name": "", "normalized_matched_wiki_entity_name": "",
                      "type": "WikipediaEntity"}}
    assert qa.trivia_qa(raw) == {"question": "Which planet is known as the Red Planet?",
                                 "answer": "Mars", "aliases": "Mars | Planet Mars | Fourth planet"}
    raw["answer"]["value"] = ""
    assert qa.trivia_qa(raw)["answer"] == "Mars"
    raw["answer"]["aliases"] = []
    with pytest.raises(DataFormatError, match="empty answer"):
        qa.trivia_qa(raw)


def test_squad_v2_unanswerable():
    raw = {"id": "1", "title": "Tides", "context": "Tides are caused by the Moon.",
           "question": "What causes tides?", "is_impossible": False,
           "answers": {"text": ["the Moon", "Moon"], "answer_start": [19, 23]},
           "plausible_answers": {"text": [], "answer_start": []}}
    assert qa.squad_v2(raw)["answer"] == "the Moon"
    raw.update(is_impossible=True, answers={"text": [], "answer_start": []},
               plausible_answers={"text": ["the Sun"], "answer_start": [0]})
    assert qa.squad_v2(raw) == {"title": "Tides", "context": "Tides are caused by the Moon.",
                                "question": "What causes tides?", "answer": "unanswerable"}


def test_drop_answer_and_validated_fallback():
    raw = {"passage": "The Bears scored 14 points.", "question": "How many points?",
           "answer": "14", "validated_answers": ["14"], "query_id": "q0"}
    assert qa.drop(raw)["answer"] == "14"
    raw.update(answer="", validated_answers=["", "1998-5-2"])
    assert qa.drop(raw)["answer"] == "1998-5-2"
    raw["validated_answers"] = []
    with pytest.raises(DataFormatError, match="no answer"):
        qa.drop(raw)


def test_quac_context_and_cannotanswer():
    raw = {"context": "Lee joined the band in 1975. CANNOTANSWER", "followup": "y", "yesno": "x",
           "question": "When did he join?", "section_title": "Career", "background": "A singer.",
           "title": "Sam Lee", "answers": {"text": ["in 1975"], "answer_start": [19]},
           "orig_answer": {"text": "Lee joined the band in 1975.", "answer_start": 0}}
    out = qa.quac(raw)
    assert out["context"] == "Lee joined the band in 1975."
    assert out["answer"] == "Lee joined the band in 1975."
    raw["orig_answer"] = {"text": "CANNOTANSWER", "answer_start": 29}
    assert qa.quac(raw)["answer"] == "unanswerable"


def test_coqa_conversation():
    out = qa.coqa(REAL["coqa"][0])
    assert out["questions"].splitlines() == ["1. What did Mia plant?", "2. How many?",
                                             "3. How many sprouted?", "4. Who got the tomatoes?"]
    assert out["answers"].splitlines()[-1] == "4. her grandmother"
    assert out["history"] == ("Q: What did Mia plant?\nA: tomato seeds\nQ: How many?\nA: three\n"
                              "Q: How many sprouted?\nA: two")
    assert (out["last_question"], out["last_answer"]) == ("Who got the tomatoes?", "her grandmother")
    assert qa.coqa(REAL["coqa"][1])["history"] == ""
    bad = dict(REAL["coqa"][1], questions=["a?", "b?"])
    with pytest.raises(DataFormatError, match="2 questions and 1 answers"):
        qa.coqa(bad)


def test_arc_answer_key_matches_choice_labels():
    raw = {"id": "Mercury_1", "question": "Which gas do plants give off?", "answerKey": 2,
           "choices": {"text": ["nitrogen", "helium", "oxygen", "argon"], "label": [0, 1, 2, 3]}}
    assert qa.arc(raw) == {"question": "Which gas do plants give off?",
                           "options": ["nitrogen", "helium", "oxygen", "argon"], "answer": "oxygen"}
    five = {"id": "x", "question": "q", "answerKey": 4,
            "choices": {"text": list("vwxyz"), "label": [0, 1, 2, 3, 4]}}
    assert qa.arc(five)["answer"] == "z"
    shifted = {"id": "y", "question": "q", "answerKey": 3,  # labels B-E: the key D is item 2
               "choices": {"text": ["b", "c", "d", "e"], "label": [1, 2, 3, 4]}}
    assert qa.arc(shifted)["answer"] == "d"


def test_cosmos_and_openbookqa_options():
    raw = {"id": "c1", "context": "I missed the bus again.", "question": "Why was I upset?",
           "answer0": "I was late.", "answer1": "I won.", "answer2": "I slept.",
           "answer3": "None of the above choices.", "label": 0}
    assert qa.cosmos_qa(raw)["options"][3] == "None of the above choices."
    assert qa.cosmos_qa(raw)["answer"] == "I was late."
    with pytest.raises(DataFormatError, match="label 7"):
        qa.cosmos_qa(dict(raw, label=7))
    obqa = {"question": {"stem": "A magnet attracts", "choice_A": "wood", "choice_B": "iron nails",
                         "choice_C": "glass", "choice_D": "paper"},
            "fact1": "magnets attract iron", "humanScore": 1.0, "clarity": 2.0,
            "turkIdAnonymized": "t", "answerKey": 1}
    assert qa.openbookqa(obqa) == {"question": "A magnet attracts", "fact": "magnets attract iron",
                                   "options": ["wood", "iron nails", "glass", "paper"],
                                   "answer": "iron nails"}


def test_ai2_science_options_split_out_of_the_input():
    assert qa.ai2_science(REAL["unified_qa"][0]) == {
        "question": "Which of these is a renewable resource?",
        "options": ["coal", "wind", "oil", "natural gas"], "answer": "wind"}
    lower = {"input": "What do plants mostly take in from the air? \\n (a) oxygen (b) carbon dioxide "
             "(c) nitrogen", "output": "Carbon dioxide"}
    out = qa.ai2_science(lower)  # lowercase markers, answer in another case
    assert out["options"] == ["oxygen", "carbon dioxide", "nitrogen"]
    assert out["answer"] == "carbon dioxide"
    real_newline = {"input": "Which is a mammal?\n(A) shark (B) whale", "output": "whale"}
    assert qa.ai2_science(real_newline)["options"] == ["shark", "whale"]
    stray = {"input": "Which pill is a supplement? \\n (A) vitamin (c) tablets (B) chalk", "output": "chalk"}
    assert qa.ai2_science(stray)["options"] == ["vitamin (c) tablets", "chalk"]
    with pytest.raises(DataFormatError, match="no \\(A\\)"):
        qa.ai2_science({"input": "What is heat?", "output": "energy"})
    with pytest.raises(DataFormatError, match="not one of the options"):
        qa.ai2_science({"input": "Pick: (A) red (B) blue", "output": "green"})


def test_lambada_last_word():
    assert qa.lambada(REAL["lambada"][1]) == {
        "context": "The dog barked at the mailman every morning until the mailman brought him a",
        "answer": "biscuit"}
    with pytest.raises(DataFormatError, match="fewer than two words"):
        qa.lambada({"passage": "word"})


def test_multi_news_joins_articles():
    raw = {"document": "First story text. ||||| Second story,\nwith a line break. |||||  ",
           "summary": "– Two outlets report the same thing."}
    assert qa.multi_news(raw) == {
        "document": "First story text.\n\nSecond story,\nwith a line break.", "num_articles": "2",
        "summary": "– Two outlets report the same thing."}


def test_opinion_abstracts_order_by_key():
    rt = qa.rotten_tomatoes(REAL["opinion_abstracts/rotten_tomatoes"][0])
    assert rt["reviews"] == ("- A quietly great lead performance.\n- The pacing drags.\n"
                             "- Patience pays off.")
    assert rt["movie"] == "The Long Harbour"
    debate = qa.idebate(REAL["opinion_abstracts/idebate"][0])
    assert debate["argument"] == ("Not every child has help at home. "
                                  "Richer families can pay for tutors.")
    assert debate["claim"] == "Homework widens the gap between pupils."


def test_rendering_is_deterministic(catalog):
    spec = catalog.tasks["flan2021_cosmos_qa"]
    with mock("flan2021_cosmos_qa"):
        fields = next(iter(TaskData(spec).examples("validation")))[1]
    a = Renderer(spec, "zs_opt").render(fields, 5)
    b = Renderer(spec, "zs_opt").render(fields, 5)
    assert a == b
    templates = {Renderer(spec, "zs_opt").render(fields, i).template_idx for i in range(200)}
    assert templates == set(range(len(spec.templates["opt"])))
