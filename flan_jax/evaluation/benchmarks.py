"""What the four benchmarks are made of: task lists, languages, file layouts, env variables."""

from __future__ import annotations

import os

MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge",
    "college_biology", "college_chemistry", "college_computer_science", "college_mathematics",
    "college_medicine", "college_physics", "computer_security", "conceptual_physics",
    "econometrics", "electrical_engineering", "elementary_mathematics", "formal_logic",
    "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics",
    "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history",
    "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law",
    "professional_medicine", "professional_psychology", "public_relations",
    "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)

# BBH file name -> target form (see answers.normalize_bbh) and chance accuracy in percent
# (1 / number of answer options; 0 for free-form answers).
BBH_TASKS: dict[str, tuple[str, float]] = {
    "boolean_expressions": ("true_false", 50.0),
    "causal_judgement": ("yes_no", 50.0),
    "date_understanding": ("choice", 100 / 6),
    "disambiguation_qa": ("choice", 100 / 3),
    "dyck_languages": ("dyck", 0.0),
    "formal_fallacies": ("valid_invalid", 50.0),
    "geometric_shapes": ("choice", 10.0),
    "hyperbaton": ("choice", 50.0),
    "logical_deduction_five_objects": ("choice", 20.0),
    "logical_deduction_seven_objects": ("choice", 100 / 7),
    "logical_deduction_three_objects": ("choice", 100 / 3),
    "movie_recommendation": ("choice", 25.0),
    "multistep_arithmetic_two": ("number", 0.0),
    "navigate": ("yes_no", 50.0),
    "object_counting": ("number", 0.0),
    "penguins_in_a_table": ("choice", 20.0),
    "reasoning_about_colored_objects": ("choice", 100 / 18),
    "ruin_names": ("choice", 25.0),
    "salient_translation_error_detection": ("choice", 100 / 6),
    "snarks": ("choice", 50.0),
    "sports_understanding": ("yes_no", 50.0),
    "temporal_sequences": ("choice", 25.0),
    "tracking_shuffled_objects_five_objects": ("choice", 20.0),
    "tracking_shuffled_objects_seven_objects": ("choice", 100 / 7),
    "tracking_shuffled_objects_three_objects": ("choice", 100 / 3),
    "web_of_lies": ("yes_no", 50.0),
    "word_sorting": ("words", 0.0),
}

MGSM_LANGUAGES = ("bn", "de", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")  # the average
MGSM_ALL_LANGUAGES = ("en", *MGSM_LANGUAGES)  # English is reported apart
TYDIQA_LANGUAGES = ("ar", "bn", "fi", "id", "ko", "ru", "sw", "te")
TYDIQA_TFDS = "tydi_qa/goldp:3.0.0"

BENCHMARKS = ("mmlu", "bbh", "tydiqa", "mgsm")

MMLU_DIR_ENV = "FLAN_JAX_MMLU_DIR"
MMLU_COT_ENV = "FLAN_JAX_MMLU_COT"
BBH_DIR_ENV = "FLAN_JAX_BBH_DIR"
MGSM_DIR_ENV = "FLAN_JAX_MGSM_DIR"
MGSM_EXEMPLARS_ENV = "FLAN_JAX_MGSM_EXEMPLARS"
# Looked for in the MGSM directory, in this order: our JSON, the official Python file.
MGSM_EXEMPLAR_FILES = ("mgsm_exemplars.json", "exemplars.py")
ZERO_SHOT_ENV = "FLAN_JAX_EVAL_ZERO_SHOT"  # "1": prompts carry no exemplars

LAYOUTS = {
    "mmlu": f"""MMLU (${MMLU_DIR_ENV}, or DATA_DIR/mmlu): the official CSV files, no header,
columns question, A, B, C, D, answer letter:
  data/dev/{{subject}}_dev.csv     (5 exemplars per subject, used in order)
  data/val/{{subject}}_val.csv
  data/test/{{subject}}_test.csv   (what is scored)
  mmlu-cot.json                   (optional, or ${MMLU_COT_ENV}: {{subject: CoT few-shot prompt}})""",
    "bbh": f"""BBH (${BBH_DIR_ENV}, or DATA_DIR/bbh): the BIG-Bench-Hard repository layout:
  bbh/{{task}}.json          {{"canary": ..., "examples": [{{"input": ..., "target": ...}}]}}
  cot-prompts/{{task}}.txt   a canary line, a "-----" line, a description line, then
                           exemplars "Q: ...\\nA: Let's think step by step. ... So the answer is X." """,
    "mgsm": f"""MGSM (${MGSM_DIR_ENV}, or DATA_DIR/mgsm):
  mgsm_{{lang}}.tsv       no header: question <TAB> integer answer ({", ".join(MGSM_ALL_LANGUAGES)})
  exemplars.py          the official exemplars (google-research/url-nlp mgsm/exemplars.py),
                        read as data, never run; or
  mgsm_exemplars.json   {{lang: [{{"question": ..., "answer": step-by-step text,
                        "number": 11}}, ...]}} (8 per language; English built in);
                        ${MGSM_EXEMPLARS_ENV} names either file""",
    "tydiqa": f"""TyDiQA GoldP: the TFDS dataset {TYDIQA_TFDS} prepared with `tfds build tydi_qa/goldp`
  (splits validation-{{lang}} for {", ".join(TYDIQA_LANGUAGES)}), in the TFDS data directory
  ($TFDS_DATA_DIR, or --tfds_data_dir, or DATA_DIR/tensorflow_datasets)""",
}


def zero_shot() -> bool:
    return os.environ.get(ZERO_SHOT_ENV, "") == "1"


assert len(MMLU_SUBJECTS) == 57 and len(BBH_TASKS) == 27
