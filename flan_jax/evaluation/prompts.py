"""Few-shot prompts of the evaluation tasks, read from the exemplar files beside the data.

The task YAML in `tasks/eval/` names parser functions of this module by task:
`bbh__{task}`, `mmlu_cot__{subject}` and `mgsm__{lang}` (resolved by the module
`__getattr__`). Each returns the example's fields plus the rendered exemplar block(s)
(`direct_prompt`, `cot_prompt`) that the templates put before the query. Exemplar files
are read once per path, when the first example is parsed (registering the catalog reads
nothing). With $FLAN_JAX_EVAL_ZERO_SHOT=1 the blocks hold no exemplars (zero-shot and
zero-shot CoT).

MGSM exemplars: the official `exemplars.py` of google-research/url-nlp (mgsm/), read as
data (see `read_official_mgsm_exemplars`: never executed or imported), or a JSON file of our
own layout (English is built in as `ENGLISH_MGSM_EXEMPLARS`):

    {"de": [{"question": "...", "answer": "step-by-step text that ends by stating the
             number, e.g. '... Die Antwort ist 11.'", "number": 11}, ... 8 items],
     "fr": [...], ...}
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flan_jax.data.metrics import ANSWER_IS, extract_cot_answer
from flan_jax.errors import DataFormatError, FlanJaxError
from flan_jax.evaluation import benchmarks as bm
from flan_jax.evaluation.answers import normalize_number

Example = dict[str, Any]
COT_TRIGGER = "Let's think step by step."

# Eight grade-school problems with worked answers, written for flan_jax.
ENGLISH_MGSM_EXEMPLARS = [
    {"question": "A baker makes 4 trays of rolls with 12 rolls on each tray. She sells 30 "
                 "rolls. How many rolls are left?",
     "answer": "The baker makes 4 * 12 = 48 rolls. After selling 30, 48 - 30 = 18 rolls are "
               "left. The answer is 18.", "number": 18},
    {"question": "Tom reads 15 pages of a book every evening. How many pages does he read in "
                 "two weeks?",
     "answer": "Two weeks have 2 * 7 = 14 evenings. He reads 14 * 15 = 210 pages. The answer "
               "is 210.", "number": 210},
    {"question": "A bus has 52 seats. At the first stop 19 people get on, and at the second "
                 "stop 7 get off and 11 get on. How many seats are empty now?",
     "answer": "After the first stop 19 seats are taken. After the second stop 19 - 7 + 11 = "
               "23 seats are taken. So 52 - 23 = 29 seats are empty. The answer is 29.",
     "number": 29},
    {"question": "Maria buys 3 notebooks at $4 each and a pen for $2. She pays with a $20 "
                 "bill. How much change does she get?",
     "answer": "The notebooks cost 3 * 4 = 12 dollars, so everything costs 12 + 2 = 14 "
               "dollars. Her change is 20 - 14 = 6 dollars. The answer is 6.", "number": 6},
    {"question": "A garden has 6 rows of tulips. Each row has 25 tulips, and a third of all "
                 "the tulips are red. How many tulips are not red?",
     "answer": "There are 6 * 25 = 150 tulips. A third of them, 150 / 3 = 50, are red, so "
               "150 - 50 = 100 are not red. The answer is 100.", "number": 100},
    {"question": "Sam saves $35 a month. How many months does he need to save to buy a bike "
                 "that costs $420?",
     "answer": "He needs 420 / 35 = 12 months of saving. The answer is 12.", "number": 12},
    {"question": "A farmer has 3 times as many hens as cows. He has 8 cows. How many legs do "
                 "his hens and cows have together?",
     "answer": "He has 3 * 8 = 24 hens with 24 * 2 = 48 legs. The 8 cows have 8 * 4 = 32 "
               "legs. Together they have 48 + 32 = 80 legs. The answer is 80.", "number": 80},
    {"question": "A school orders 1,200 pencils in boxes of 24. It gives 15 boxes to the art "
                 "class. How many boxes are left?",
     "answer": "The order fills 1200 / 24 = 50 boxes. After giving away 15, 50 - 15 = 35 "
               "boxes are left. The answer is 35.", "number": 35},
]


@dataclasses.dataclass(frozen=True)
class Exemplar:
    question: str
    rationale: str  # the step-by-step answer text
    answer: str  # the final answer alone


@dataclasses.dataclass(frozen=True)
class FewShotPrompt:
    description: str
    exemplars: tuple[Exemplar, ...]

    def direct(self, header: str = "") -> str:
        head = f"{self.description}\n\n" if self.description else header
        if bm.zero_shot():
            return head
        return head + "".join(f"Q: {e.question}\nA: {e.answer}\n\n" for e in self.exemplars)

    def cot(self, header: str = "") -> str:
        head = f"{self.description}\n\n" if self.description else header
        if bm.zero_shot():
            return head
        return head + "".join(f"Q: {e.question}\nA: {e.rationale}\n\n" for e in self.exemplars)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


@functools.cache
def read_bbh_prompt(path: str) -> FewShotPrompt:
    """Parses a BBH `cot-prompts/{task}.txt` file (canary, "-----", description, exemplars)."""
    if not os.path.isfile(path):
        raise FlanJaxError(f"BBH CoT prompt file not found: {path}\n{bm.LAYOUTS['bbh']}")
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    try:
        dash = next(i for i, line in enumerate(lines[:5]) if line.strip() == "-----")
    except StopIteration:
        raise DataFormatError(f"{path}:2: expected a canary line, then a '-----' line, then a "
                              "description line") from None
    rest_lines = lines[dash + 1:]
    first = next((i for i, line in enumerate(rest_lines) if line.strip()), None)
    if first is None:
        raise DataFormatError(f"{path}:{dash + 2}: no description line after '-----'")
    description = rest_lines[first].strip()
    body_start = len("\n".join(lines[:dash + 1 + first + 1])) + 1
    body = text[body_start:]
    exemplars = []
    starts = [m.start() for m in re.finditer(r"(?m)^Q: ", body)]
    if not starts:
        raise DataFormatError(f"{path}:{_line_of(text, body_start)}: no exemplars "
                              "('Q: ...' then 'A: ...') after the description")
    for n, (start, end) in enumerate(zip(starts, [*starts[1:], len(body)]), start=1):
        chunk = body[start + 3:end].strip()
        line = _line_of(text, body_start + start)
        question, sep, rationale = chunk.partition("\nA: ")
        if not sep:
            raise DataFormatError(f"{path}:{line}: exemplar {n} has no 'A: ' line")
        rationale = rationale.strip()
        if not ANSWER_IS.search(rationale):
            raise DataFormatError(f"{path}:{line}: exemplar {n} does not end with "
                                  "'So the answer is X.'")
        exemplars.append(Exemplar(question.strip(), rationale, extract_cot_answer(rationale)))
    return FewShotPrompt(description, tuple(exemplars))


@functools.cache
def _read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}:{e.lineno}: malformed JSON: {e.msg}") from None


def _env_dir(env: str, benchmark: str) -> str:
    value = os.environ.get(env)
    if not value:
        raise FlanJaxError(f"${env} is not set\n{bm.LAYOUTS[benchmark]}")
    return value


def mmlu_cot_path() -> str:
    explicit = os.environ.get(bm.MMLU_COT_ENV)
    if explicit:
        return explicit
    return os.path.join(os.environ.get(bm.MMLU_DIR_ENV, ""), "mmlu-cot.json")


def mgsm_exemplars_path() -> str:
    """$FLAN_JAX_MGSM_EXEMPLARS, else mgsm_exemplars.json or the official exemplars.py in
    $FLAN_JAX_MGSM_DIR (the JSON file's path when neither is there)."""
    explicit = os.environ.get(bm.MGSM_EXEMPLARS_ENV)
    if explicit:
        return explicit
    directory = os.environ.get(bm.MGSM_DIR_ENV, "")
    found = [os.path.join(directory, name) for name in bm.MGSM_EXEMPLAR_FILES]
    return next((p for p in found if os.path.isfile(p)), found[0])


def _label_free(texts: list[str]) -> list[str]:
    """The texts without the label they all start with ("Frage: ", "问题：")."""
    label = re.match(r"[^:\uff1a\d]{1,40}[:\uff1a]\s*", texts[0]) if texts else None
    if label and all(t.startswith(label.group(0)) for t in texts):
        return [t[label.end():].strip() for t in texts]
    return [t.strip() for t in texts]


@functools.cache
def read_official_mgsm_exemplars(path: str) -> dict[str, list[dict[str, Any]]]:
    """The exemplars of url-nlp's `mgsm/exemplars.py` in our JSON layout.

    The file is data written as Python: `MGSM_EXEMPLARS = {lang: {"1": {"q": ..., "a": ...},
    ...}}` and `EXEMPLAR_NUMBER_ANSWERS = [11, ...]`. It is parsed with `ast`, and only
    those two assignments are read, with `ast.literal_eval`; nothing in the file runs. The
    questions and answers lose their native labels ("Frage: ", "Schritt-für-Schritt-Antwort: "),
    as prompts label them "Q: " and "A: ".
    """
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    except SyntaxError as e:
        raise DataFormatError(f"{path}:{e.lineno}: not readable as Python literals ({e.msg})"
                              ) from None
    values: dict[str, Any] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("MGSM_EXEMPLARS", "EXEMPLAR_NUMBER_ANSWERS")):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise DataFormatError(f"{path}:{node.lineno}: {node.targets[0].id} is not a "
                                      "literal (only literals are read)") from None
    exemplars, numbers = values.get("MGSM_EXEMPLARS"), values.get("EXEMPLAR_NUMBER_ANSWERS")
    if not isinstance(exemplars, dict) or not isinstance(numbers, list):
        raise DataFormatError(f"{path}: expected the assignments MGSM_EXEMPLARS = {{lang: "
                              "{'1': {'q': ..., 'a': ...}, ...}} and EXEMPLAR_NUMBER_ANSWERS = "
                              "[numbers] (google-research/url-nlp mgsm/exemplars.py)")
    out = {}
    for lang, items in exemplars.items():
        if not (isinstance(items, dict) and len(items) == len(numbers) and all(
                isinstance(v, dict) and isinstance(v.get("q"), str) and isinstance(v.get("a"), str)
                for v in items.values())):
            raise DataFormatError(f"{path}: MGSM_EXEMPLARS[{lang!r}] should map '1'..'"
                                  f"{len(numbers)}' to {{'q': question, 'a': answer}}, one per "
                                  "number of EXEMPLAR_NUMBER_ANSWERS")
        ordered = [items[k] for k in sorted(items, key=lambda k: int(k) if k.isdigit() else k)]
        questions = _label_free([x["q"] for x in ordered])
        answers_ = _label_free([x["a"] for x in ordered])
        out[lang] = [{"question": q, "answer": a, "number": n}
                     for q, a, n in zip(questions, answers_, numbers, strict=True)]
    return out


def mmlu_cot_prompt(subject: str) -> str:
    header = f"The following are multiple choice questions about {subject.replace('_', ' ')}.\n\n"
    if bm.zero_shot():
        return header
    path = mmlu_cot_path()
    if not os.path.isfile(path):
        raise FlanJaxError(f"MMLU-CoT exemplars not found: {path} (MMLU-CoT needs them; "
                           f"MMLU direct does not)\n{bm.LAYOUTS['mmlu']}")
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(subject), str):
        raise DataFormatError(f"{path}: no prompt text for subject {subject!r} "
                              "(expected a JSON object: subject -> few-shot prompt text)")
    return data[subject].strip() + "\n\n"


def mgsm_prompt(lang: str) -> FewShotPrompt:
    """The 8 exemplars of one language (English built in unless the JSON has 'en')."""
    path = mgsm_exemplars_path()
    if not os.path.isfile(path):
        data = {}
    elif path.endswith(".py"):
        data = read_official_mgsm_exemplars(path)
    else:
        data = _read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object: language -> list of exemplars")
    items = data.get(lang)
    if items is None and lang == "en":
        items = ENGLISH_MGSM_EXEMPLARS
    if items is None:
        where = path if os.path.isfile(path) else f"{path} (missing)"
        raise FlanJaxError(f"no MGSM exemplars for language {lang!r} in {where}; languages "
                           f"present: {', '.join(sorted(data)) or 'none'}\n{bm.LAYOUTS['mgsm']}")
    exemplars = []
    for i, item in enumerate(items if isinstance(items, list) else [None]):
        if not (isinstance(item, dict) and {"question", "answer", "number"} <= set(item)):
            raise DataFormatError(f"{path}: {lang}[{i}]: expected an object with 'question', "
                                  "'answer' (step by step) and 'number'")
        exemplars.append(Exemplar(str(item["question"]), str(item["answer"]),
                                  normalize_number(str(item["number"]))))
    return FewShotPrompt("", tuple(exemplars))


def _bbh_parser(task: str) -> Callable[[Example], Example]:
    def parse(raw: Example) -> Example:
        path = os.path.join(_env_dir(bm.BBH_DIR_ENV, "bbh"), "cot-prompts", f"{task}.txt")
        prompt = read_bbh_prompt(path)
        return {"input": raw["input"], "target": str(raw["target"]),
                "direct_prompt": prompt.direct(), "cot_prompt": prompt.cot()}

    return parse


def _mmlu_cot_parser(subject: str) -> Callable[[Example], Example]:
    def parse(raw: Example) -> Example:
        return {**{k: raw[k] for k in ("question", "A", "B", "C", "D", "answer")},
                "cot_prompt": mmlu_cot_prompt(subject)}

    return parse


def _mgsm_parser(lang: str) -> Callable[[Example], Example]:
    def parse(raw: Example) -> Example:
        answer = normalize_number(str(raw["answer"]))
        if not answer or not re.fullmatch(r"-?\d+", answer):
            raise DataFormatError(f"answer {raw['answer']!r} is not an integer")
        prompt = mgsm_prompt(lang)
        return {"question": raw["question"], "answer": answer,
                "direct_prompt": prompt.direct(), "cot_prompt": prompt.cot(),
                "cot_trigger": f" {COT_TRIGGER}" if bm.zero_shot() else ""}

    return parse


_FACTORIES = {"bbh": (_bbh_parser, bm.BBH_TASKS), "mmlu_cot": (_mmlu_cot_parser, bm.MMLU_SUBJECTS),
              "mgsm": (_mgsm_parser, bm.MGSM_ALL_LANGUAGES)}


@functools.cache
def __getattr__(name: str) -> Callable[[Example], Example]:
    kind, sep, which = name.partition("__")
    if sep and kind in _FACTORIES and which in _FACTORIES[kind][1]:
        return _FACTORIES[kind][0](which)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
