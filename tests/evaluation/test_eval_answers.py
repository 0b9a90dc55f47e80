"""Answer extraction and normalisation, self-consistency, the normalized average, prompts."""

import pytest

from flan_jax.data.registry import CATALOG_DIR, load_catalog
from flan_jax.evaluation import answers, prompts
from flan_jax.evaluation import benchmarks as bm
from flan_jax.evaluation.scoring import (
    CHANCE,
    PUBLISHED,
    bbh_mean_chance,
    normalize,
    normalized_average,
)

from conftest import FIXTURES

BBH_DIR = FIXTURES / "eval" / "bbh"


@pytest.mark.parametrize("text, expected", [
    ("Let's think step by step. 2 + 2 = 4. So the answer is 4.", "4"),
    ("So the answer is (B).", "(B)"),
    ("The answer is apple mango pear.", "apple mango pear"),
    ("the answer is: valid.\nMore text", "valid"),
    ("First the answer is 3. Then, correcting: the answer is 5.", "5"),
    ("no phrase here", "no phrase here"),
    ("So the answer is 3.5.", "3.5"),
    ("So the final answer is ] ).", "] )"),
])
def test_extract_cot_answer(text, expected):
    assert answers.extract_cot_answer(text) == expected


# Every BBH target form: (kind, prediction, target) pairs that must match, then ones that must not.
MATCHES = [
    ("choice", "(A)", "(A)"),
    ("choice", "(c) 06/27/2018", "(C)"),
    ("choice", "B", "(B)"),
    ("choice", "D. Mars", "(D)"),
    ("true_false", "True", "True"),
    ("true_false", "false.", "False"),
    ("yes_no", "Yes", "Yes"),
    ("yes_no", "no, because", "No"),
    ("yes_no", "yes", "yes"),  # sports_understanding uses lower case
    ("valid_invalid", "invalid", "invalid"),
    ("valid_invalid", "Valid.", "valid"),
    ("number", "-12", "-12"),
    ("number", "1,024", "1024"),
    ("number", "There are 7 objects", "7"),
    ("words", "apple, mango pear", "apple mango pear"),
    ("words", "Apple Mango Pear", "apple mango pear"),
    ("dyck", "> ) ]", "> ) ]"),
    ("dyck", ">)]", "> ) ]"),
]
MISMATCHES = [
    ("choice", "(B)", "(A)"),
    ("choice", "nothing", "(A)"),
    ("true_false", "False", "True"),
    ("yes_no", "maybe", "Yes"),
    ("valid_invalid", "invalid", "valid"),
    ("number", "12", "-12"),
    ("number", "", "0"),
    ("words", "mango apple pear", "apple mango pear"),
    ("dyck", ") >", "> )"),
]


@pytest.mark.parametrize("kind, prediction, target", MATCHES)
def test_bbh_forms_match(kind, prediction, target):
    assert answers.normalize_bbh(kind, prediction) == answers.normalize_bbh(kind, target) != ""


@pytest.mark.parametrize("kind, prediction, target", MISMATCHES)
def test_bbh_forms_mismatch(kind, prediction, target):
    assert answers.normalize_bbh(kind, prediction) != answers.normalize_bbh(kind, target)


def test_every_bbh_file_has_a_known_form():
    kinds = {kind for kind, _ in bm.BBH_TASKS.values()}
    assert kinds == {"choice", "true_false", "yes_no", "valid_invalid", "number", "words", "dyck"}
    for kind in kinds:
        answers.normalize_bbh(kind, "x")
    with pytest.raises(ValueError):
        answers.normalize_bbh("colour", "x")


def test_bbh_cot_answer():
    text = "Let's think step by step. not True is False. So the answer is False."
    assert answers.bbh_answer("true_false", text, cot=True) == "False"
    assert answers.bbh_answer("choice", "(B)", cot=False) == "(B)"


def test_mmlu_letter_extraction():
    assert answers.mmlu_answer("(C)", cot=False) == "C"
    assert answers.mmlu_answer(" B. 56", cot=False) == "B"
    assert answers.mmlu_answer("Mars", cot=False) == ""
    assert answers.mmlu_answer("(E)", cot=False) == ""
    assert answers.mmlu_answer("(A) is wrong because ... The answer is (D).", cot=True) == "D"


def test_mgsm_number_extraction():
    assert answers.mgsm_answer("He has 3 + 4 = 7 apples. The answer is 7.", cot=True) == "7"
    assert answers.mgsm_answer("Total 1,000 - 250 = 750. The answer is 1,250.", cot=True) == "1250"
    assert answers.mgsm_answer("3 mal 10 ist 30. Die Antwort ist 30.", cot=True) == "30"
    assert answers.mgsm_answer("42 apples", cot=False) == "42"
    assert answers.mgsm_answer("none", cot=True) == ""
    assert answers.normalize_number("2.50") == "2.5"


def test_majority_vote_and_agreement():
    assert answers.majority_vote(["7", "7", "8", "", "7"]) == ("7", 0.6)
    assert answers.majority_vote(["8", "7", "7", "8"]) == ("8", 0.5)  # tie: first seen
    assert answers.majority_vote(["", ""]) == ("", 0.0)


def test_normalized_average_reproduces_published_xxl():
    xxl = PUBLISHED["Flan-T5-XXL"]
    assert round(normalized_average(xxl), 1) == xxl["norm_avg"] == 23.7
    for row in PUBLISHED.values():  # the other sizes within 0.5
        assert abs(normalized_average(row) - row["norm_avg"]) < 0.5
    assert CHANCE == {"mmlu_direct": 25.0, "mmlu_cot": 25.0, "bbh_direct": 26.0,
                      "bbh_cot": 26.0, "tydiqa": 0.0, "mgsm": 0.0}
    assert round(bbh_mean_chance(), 1) == 26.4
    assert normalize(25.0, 25.0) == 0.0
    assert normalized_average({"mmlu_direct": 50.0}) is None


def test_bbh_prompt_file_is_parsed():
    prompt = prompts.read_bbh_prompt(str(BBH_DIR / "cot-prompts" / "date_understanding.txt"))
    assert prompt.description == "Work out dates from a short description."
    assert [e.answer for e in prompt.exemplars] == ["(A)", "(C)", "(A)"]
    assert prompt.direct().count("\nA: (") == 3
    assert prompt.cot().count("So the answer is") == 3


def test_malformed_bbh_prompt_names_file_and_line(tmp_path):
    bad = tmp_path / "navigate.txt"
    bad.write_text("canary\n-----\nDescription.\n\nQ: one\nA: Let's think. So the answer is Yes."
                   "\n\nQ: two\nA: Let's think step by step. It is unclear.\n")
    with pytest.raises(prompts.DataFormatError, match=r"navigate.txt:8: exemplar 2"):
        prompts.read_bbh_prompt(str(bad))
    bad.write_text("no dashes\nhere\n")
    with pytest.raises(prompts.DataFormatError, match=r"navigate.txt:2: expected a canary"):
        prompts.read_bbh_prompt(str(bad))


def test_mgsm_exemplars_english_built_in_and_missing_language(tmp_path, monkeypatch):
    monkeypatch.setenv(bm.MGSM_EXEMPLARS_ENV, str(tmp_path / "none.json"))
    assert len(prompts.mgsm_prompt("en").exemplars) == 8
    with pytest.raises(prompts.FlanJaxError, match="no MGSM exemplars for language 'de'"):
        prompts.mgsm_prompt("de")


MGSM_DIR = FIXTURES / "eval" / "mgsm"


def test_official_mgsm_exemplars_file_is_read_as_data(tmp_path, monkeypatch):
    """url-nlp's mgsm/exemplars.py layout: literals only, labels dropped, numbers attached."""
    monkeypatch.setenv(bm.MGSM_EXEMPLARS_ENV, str(MGSM_DIR / "exemplars.py"))
    de = prompts.mgsm_prompt("de")
    assert de.exemplars[1] == prompts.Exemplar(
        "Ein Regal hat 3 Fächer mit je 10 Büchern. Wie viele Bücher sind es?",
        "3 mal 10 ist 30. Die Antwort ist 30.", "30")
    assert de.cot().startswith("Q: Max hat 4 Kekse und bekommt 3 dazu. Wie viele Kekse hat "
                               "er?\nA: Max hat 4 Kekse. 4 + 3 = 7. Die Antwort ist 7.\n\n")
    assert prompts.mgsm_prompt("ru").exemplars[0].question == (
        "У Маши было 4 яблока, ей дали ещё 3. Сколько яблок у Маши?")  # \u escapes decoded
    # Found in the MGSM directory without the variable (the JSON file wins when both exist).
    monkeypatch.delenv(bm.MGSM_EXEMPLARS_ENV)
    (tmp_path / "exemplars.py").write_bytes((MGSM_DIR / "exemplars.py").read_bytes())
    monkeypatch.setenv(bm.MGSM_DIR_ENV, str(tmp_path))
    assert prompts.mgsm_exemplars_path() == str(tmp_path / "exemplars.py")
    monkeypatch.setenv(bm.MGSM_DIR_ENV, str(MGSM_DIR))
    assert prompts.mgsm_exemplars_path() == str(MGSM_DIR / "mgsm_exemplars.json")


def test_official_mgsm_exemplars_file_is_never_run(tmp_path):
    sentinel = tmp_path / "ran"
    evil = tmp_path / "exemplars.py"
    evil.write_text(f"import os\nopen({str(sentinel)!r}, 'w')\n"
                    "EXEMPLAR_NUMBER_ANSWERS = [1]\n"
                    "MGSM_EXEMPLARS = {'de': {'1': {'q': 'Frage: a?', 'a': 'Antwort: 1.'}}}\n")
    assert prompts.read_official_mgsm_exemplars(str(evil))["de"][0]["question"] == "a?"
    assert not sentinel.exists()
    call = tmp_path / "call.py"
    call.write_text("EXEMPLAR_NUMBER_ANSWERS = [1]\nMGSM_EXEMPLARS = dict(de=__import__('os'))\n")
    with pytest.raises(prompts.DataFormatError, match=r"call.py:2: MGSM_EXEMPLARS is not a "
                                                      r"literal"):
        prompts.read_official_mgsm_exemplars(str(call))


def test_tasks_check_reports_missing_mgsm_exemplars(monkeypatch, capsys):
    from flan_jax import tasks

    monkeypatch.setenv(bm.MGSM_DIR_ENV, str(MGSM_DIR))  # its JSON holds German only
    monkeypatch.delenv(bm.MGSM_EXEMPLARS_ENV, raising=False)
    assert tasks.main(["check", "mgsm_de", "--split", "test"]) == 0
    assert tasks.main(["check", "mgsm_fr", "--split", "test"]) == 1
    out = capsys.readouterr().out
    assert "FAIL     mgsm_fr_zs_cot: no MGSM exemplars for language 'fr'" in out
    assert "OK       mgsm_de_zs_cot: 2 rows read, 2 rendered" in out


def test_eval_catalog_loads_with_the_rest():
    eval_tasks = load_catalog([CATALOG_DIR / "eval"]).tasks
    assert len(eval_tasks) == 57 * 2 + 27 + 11 + 8
    assert set(eval_tasks) <= set(load_catalog().tasks)


def test_seqio_metrics_extract_answers():
    from flan_jax.evaluation import metrics

    assert answers.infer_bbh_kind("(B)") == "choice"
    assert answers.infer_bbh_kind("Yes") == "yes_no"
    assert answers.infer_bbh_kind("] )") == "dyck"
    assert answers.infer_bbh_kind("-3") == "number"
    assert answers.infer_bbh_kind("apple pear") == "words"
    bbh = metrics.bbh_accuracy(["(B)", "True", "] )"],
                               ["Let's think. So the answer is (B).", "False", "])"])
    assert bbh == {"accuracy": pytest.approx(200 / 3)}
    assert metrics.mmlu_accuracy(["(C)", "(A)"], ["(C)", "The answer is (B)."]) == {"accuracy": 50.0}
    assert metrics.mgsm_accuracy(["1250"], ["... The answer is 1,250."]) == {"accuracy": 100.0}


def test_eval_tasks_render_through_seqio(monkeypatch):
    import seqio

    from flan_jax.data.registry import register_catalog

    monkeypatch.setenv(bm.BBH_DIR_ENV, str(BBH_DIR))
    monkeypatch.setenv(bm.MMLU_DIR_ENV, str(FIXTURES / "eval" / "mmlu"))
    register_catalog(load_catalog([CATALOG_DIR / "eval"]))
    lengths = {"inputs": 2048, "targets": 16}
    rows = list(seqio.get_mixture_or_task("bbh_date_understanding_zs_cot").get_dataset(
        lengths, split="test", shuffle=False).as_numpy_iterator())
    text = rows[0]["inputs_pretokenized"].decode()
    assert text.startswith("Work out dates") and text.endswith("A: Let's think step by step.")
    assert rows[0]["targets_pretokenized"].decode() == "(A)"
    rows = list(seqio.get_mixture_or_task("mmlu_astronomy_fs_noopt").get_dataset(
        lengths, split="test", shuffle=False).as_numpy_iterator())
    assert rows[0]["inputs_pretokenized"].decode().count("\nA: (") == 5


def test_zero_shot_prompts_drop_the_exemplars(monkeypatch):
    prompt = prompts.read_bbh_prompt(str(BBH_DIR / "cot-prompts" / "boolean_expressions.txt"))
    monkeypatch.setenv(bm.ZERO_SHOT_ENV, "1")
    assert prompt.direct() == prompt.cot() == "Work out the value of a Boolean expression.\n\n"
    fields = prompts.mgsm__en({"question": "How many?", "answer": "1,200"})
    assert fields["answer"] == "1200" and fields["cot_prompt"] == ""
    assert fields["cot_trigger"] == " Let's think step by step."
    assert prompts.mmlu_cot__anatomy({k: "x" for k in ("question", "A", "B", "C", "D", "answer")})[
        "cot_prompt"] == "The following are multiple choice questions about anatomy.\n\n"
