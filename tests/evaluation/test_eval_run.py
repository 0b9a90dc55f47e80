"""End to end: a tiny random model over all four benchmarks on the fixtures; bad input."""

import csv
import json
import shutil

import gin
import jax
import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax import eval as eval_cli
from flan_jax.errors import DataFormatError, FlanJaxError
from flan_jax.evaluation import benchmarks as bm
from flan_jax.evaluation.runner import EvalConfig, plan_units, run
from flan_jax.evaluation.scoring import COMPONENTS
from flan_jax.interop import checkpoints
from flan_jax.models.config import get_config
from flan_jax.models.t5 import init_params

from conftest import FIXTURES

EVAL_DATA = FIXTURES / "eval"
# One input length and small decode lengths: four jit compilations for the whole module.
FAST = dict(batch_size=2, max_input_length=1024, min_input_length=1024, direct_decode_length=4,
            cot_decode_length=6, progress=False)


@pytest.fixture(autouse=True)
def _benchmark_env(monkeypatch):
    """The runner sets these from data_dir; monkeypatch restores them afterwards."""
    for env in (bm.MMLU_DIR_ENV, bm.BBH_DIR_ENV, bm.MGSM_DIR_ENV, bm.MMLU_COT_ENV,
                bm.MGSM_EXEMPLARS_ENV, bm.ZERO_SHOT_ENV):
        monkeypatch.setenv(env, "")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    config = get_config("tiny", vocab_size=seqio.ByteVocabulary().vocab_size)
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    checkpoints.save_params(path, init_params(config, jax.random.key(0)), config)
    return str(path)


def test_tiny_model_over_all_four_benchmarks(tiny_checkpoint, tmp_path):
    cfg = EvalConfig(checkpoint_path=tiny_checkpoint, data_dir=str(EVAL_DATA),
                     tasks=("astronomy", "boolean_expressions", "word_sorting", "en", "de", "fr",
                            "ar"),
                     max_examples=2, self_consistency_samples=2, output_dir=str(tmp_path / "out"),
                     **FAST)
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        out = run(cfg)
    comps = out["components"]
    for component in COMPONENTS:
        assert 0.0 <= comps[component] <= 100.0, component
    for extra in ("mmlu_direct_rank", "mgsm_en", "mgsm_direct", "bbh_cot_sc2", "mgsm_sc2",
                  "tydiqa_f1"):
        assert extra in comps
    assert any("MGSM-fr skipped: no MGSM exemplars for language 'fr'" in n for n in out["notes"])

    paths = out["paths"]
    rows = [json.loads(line) for line in paths["predictions"].read_text().splitlines()]
    # mmlu 2 modes + bbh 2 tasks x 2 modes + mgsm en, de x 2 modes + tydiqa ar, 2 each
    assert len(rows) == out["examples"] == 2 * (2 + 4 + 4 + 1)
    assert {r["benchmark"] for r in rows} == set(bm.BENCHMARKS)
    cot_rows = [r for r in rows if r["component"] == "bbh_cot"]
    assert all(len(r["samples"]) == 2 and "agreement" in r for r in cot_rows)
    assert cot_rows[0]["inputs"].endswith("Q: not True and False is\nA: Let's think step by step.")
    tydi = [r for r in rows if r["benchmark"] == "tydiqa"]
    assert all("f1" in r for r in tydi)

    markdown = paths["markdown"].read_text()
    assert "| Flan-T5-XXL | 23.7 | 55.1 | 48.6 | 45.3 | 41.4 | 19.0 | 4.9 |" in markdown
    assert "(ours)" in markdown and "| bbh_cot | word_sorting | 2 |" in markdown
    with open(paths["csv"]) as f:
        summary = list(csv.DictReader(f))
    assert [r["model"] for r in summary][-1] == "tiny" and summary[-1]["norm_avg"] != ""
    assert paths["tasks_csv"].exists()
    if "png" in paths:
        assert paths["png"].stat().st_size > 0
    else:
        assert "matplotlib is not installed" in markdown


def test_mmlu_cot_disabled_without_its_json(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(EVAL_DATA, data)
    (data / "mmlu" / "mmlu-cot.json").unlink()
    cfg = EvalConfig(checkpoint_path="random:tiny", data_dir=str(data), benchmarks=("mmlu",),
                     tasks=("astronomy",), max_examples=1, output_dir=str(tmp_path / "out"),
                     mmlu_direct_scoring="rank", **FAST)
    out = run(cfg)
    assert "mmlu_direct" in out["components"] and "mmlu_cot" not in out["components"]
    assert "mmlu_direct_generate" in out["components"]  # rank is the one in the average
    assert any(n.startswith("MMLU-CoT disabled") for n in out["notes"])
    assert "MMLU-CoT disabled" in out["paths"]["markdown"].read_text()


def test_missing_file_lists_the_expected_layout(tmp_path):
    cfg = EvalConfig(checkpoint_path="unused", data_dir=str(tmp_path), benchmarks=("bbh", "mgsm"),
                     tasks=("navigate", "de"), **FAST)
    with pytest.raises(FlanJaxError) as e:
        run(cfg)
    message = str(e.value)
    assert f"{tmp_path}/bbh/bbh/navigate.json" in message
    assert "cot-prompts/{task}.txt" in message and "mgsm_{lang}.tsv" in message


@pytest.mark.parametrize("benchmark, task, relpath, content, expected", [
    ("mmlu", "astronomy", "mmlu/data/test/astronomy_test.csv",
     "Q1?,a,b,c,d,A\nQ2?,a,b,c,B\n", r"astronomy_test.csv line 2: expected 6 columns"),
    ("mgsm", "en", "mgsm/mgsm_en.tsv", "Q1?\t3\nQ2?\tmany\n",
     r"mgsm_en.tsv:2: answer 'many' is not an integer"),
    ("bbh", "word_sorting", "bbh/bbh/word_sorting.json", '{"canary": "x",\n "examples": [,]}',
     r"word_sorting.json:2: malformed JSON"),
])
def test_malformed_row_names_file_and_line(tmp_path, benchmark, task, relpath, content, expected):
    data = tmp_path / "data"
    shutil.copytree(EVAL_DATA, data)
    (data / relpath).write_text(content)
    cfg = EvalConfig(checkpoint_path="unused", data_dir=str(data), benchmarks=(benchmark,),
                     tasks=(task,), **FAST)
    with pytest.raises(DataFormatError, match=expected):
        run(cfg)


def test_plan_and_cli_flags(tmp_path):
    units = plan_units(EvalConfig(benchmarks=("mgsm", "tydiqa"), modes=("cot", "zs")))
    assert {u.component for u in units} == {"mgsm", "mgsm_en", "mgsm_zs", "mgsm_zs_en",
                                            "tydiqa_zs"}
    with pytest.raises(FlanJaxError, match="unknown benchmark"):
        plan_units(EvalConfig(benchmarks=("gsm8k",)))
    try:
        cfg = eval_cli.config_from_args([
            "--gin_file=gin/runs/eval_paper.gin", f"--gin.CHECKPOINT_PATH={tmp_path}",
            "--gin.flan_jax.eval.EvalConfig.self_consistency_samples=4",
            "--benchmarks", "mmlu,bbh", "--max_examples", "3", "--tasks", "anatomy"])
    finally:
        gin.clear_config()
    assert cfg.checkpoint_path == str(tmp_path) and cfg.self_consistency_samples == 4
    assert cfg.benchmarks == ("mmlu", "bbh") and cfg.max_examples == 3
    assert cfg.tasks == ("anatomy",) and cfg.modes == ["direct", "cot"]


def test_bbh_targets_that_are_not_option_letters_are_scored_as_text_and_noted(tmp_path):
    """movie_recommendation #163 upstream: target "Monsters, Inc" where "(B)" belongs. BBH's
    exact-match evaluation credits only an answer that spells the title; so do we, and the
    report says so (it used to be an empty gold answer: wrong whatever the model said)."""
    from flan_jax.evaluation.runner import Unit, _score

    unit = Unit("bbh_cot", "bbh", "movie_recommendation", "bbh_movie_recommendation",
                "zs_cot", "test", True)
    title = "... so the answer is Monsters, Inc."
    assert _score(unit, "Monsters, Inc", {}, title)[1:3] == ("monsters inc", 100.0)
    assert _score(unit, "Monsters, Inc", {}, "So the answer is (B).")[2] == 0.0  # as BBH's
    assert _score(unit, "(C)", {}, "So the answer is (C).")[1:3] == ("(C)", 100.0)
    cfg = EvalConfig(checkpoint_path="random:tiny", data_dir=str(EVAL_DATA), benchmarks=("bbh",),
                     tasks=("movie_recommendation",), modes=("direct",),
                     output_dir=str(tmp_path / "out"), **FAST)
    out = run(cfg)
    assert ("BBH movie_recommendation: 1 target(s) are not choice answers (#1 'Monsters, Inc'); "
            "each is scored by matching the answer text") in "\n".join(out["notes"])
    records = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").open()]
    assert [r["gold"] for r in records] == ["(A)", "monsters inc", "(C)"]


def test_unreadable_vocabulary_is_one_message_saying_what_to_set(tmp_path, monkeypatch, capsys):
    """The gs:// default offline (here: a file that is no SentencePiece model) used to end in
    a TensorFlow traceback at the first tokenization."""
    bad = tmp_path / "not_spm.model"
    bad.write_bytes(b"not a sentencepiece model")
    monkeypatch.setenv("FLAN_JAX_VOCAB", str(bad))
    args = ["--data_dir", str(EVAL_DATA), "--benchmarks", "bbh", "--tasks", "boolean*",
            "--max_examples", "1", "--output_dir", str(tmp_path / "out"), "--no_progress"]
    assert eval_cli.main(["--checkpoint", "random:tiny", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: the vocabulary {bad} cannot be read (")
    assert "set $FLAN_JAX_VOCAB" in err and "spiece.model of a Hugging Face" in err
    assert "Traceback" not in err
    # A Hugging Face checkpoint's own spiece.model comes first.
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "spiece.model").write_bytes(b"junk")
    monkeypatch.setenv("FLAN_JAX_VOCAB", "byte")
    assert eval_cli.main(["--checkpoint", str(tmp_path / "hf"), *args]) == 1
    assert f"the vocabulary {tmp_path / 'hf' / 'spiece.model'} cannot be read" in \
        capsys.readouterr().err
