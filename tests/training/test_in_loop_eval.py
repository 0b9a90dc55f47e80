"""Inference evaluation through seqio.Evaluator (flan_jax.training.in_loop_eval), checked against
an independent computation: greedy decoding, the vocabulary, the task's postprocessor
and metric functions applied by hand. One demo task, a tiny random model (~30 s)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

TASK = "demo_comparison_zs_opt"
LENGTHS = {"inputs": 64, "targets": 16}
N = 5              # examples: not a multiple of BATCH
BATCH = 2
DECODE = LENGTHS["targets"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLAN_JAX_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        import flan_jax.catalog  # noqa: F401
        from flan_jax.models.config import get_config
        from flan_jax.models.t5 import init_params
        from flan_jax.training import in_loop_eval

        eval_set = in_loop_eval.load_eval_set(TASK, "test", LENGTHS, N)
        config = get_config("tiny", vocab_size=384)
        params = init_params(config, jax.random.key(0))
        yield eval_set, config, params


@pytest.fixture(scope="module")
def reference(setup):
    """The split's first N examples read directly, and their greedy decodes."""
    import seqio

    from flan_jax.models.decoding import greedy_decode

    _, config, params = setup
    task = seqio.get_mixture_or_task(TASK)
    examples = list(task.get_dataset(LENGTHS, split="test", shuffle=False,
                                     num_epochs=1).take(N).as_numpy_iterator())
    inputs = np.zeros((N, LENGTHS["inputs"]), np.int32)
    for row, ex in zip(inputs, examples):
        row[:len(ex["inputs"])] = ex["inputs"]
    tokens = np.asarray(greedy_decode(params, inputs, config=config,
                                      max_decode_length=DECODE).tokens)
    return task, examples, tokens


def _score_by_hand(task, examples, tokens) -> dict[str, float]:
    vocab = task.output_features["targets"].vocabulary
    targets, predictions = [], []
    for ex, row in zip(examples, tokens):
        ids = [int(t) for t in row]
        ids = ids[:ids.index(1)] if 1 in ids else ids          # up to EOS
        text = vocab.decode([t for t in ids if t > 0])
        predictions.append(task.postprocess_fn(text, example=ex, is_target=False))
        targets.append(task.postprocess_fn(ex["targets_pretokenized"].decode(), example=ex,
                                           is_target=True))
    scores = {}
    for fn in task.metric_fns:
        scores.update(fn(targets, predictions))
    return scores


def test_baselines_come_from_the_cached_examples(setup, reference):
    eval_set, _, _ = setup
    task, examples, _ = reference
    targets = [task.postprocess_fn(ex["targets_pretokenized"].decode(), example=ex,
                                   is_target=True) for ex in examples]
    assert eval_set.task.name == TASK
    assert eval_set.targets == targets
    commonest = max(targets.count(t) for t in targets)
    assert eval_set.majority == pytest.approx(100.0 * commonest / N)
    assert eval_set.chance == pytest.approx(50.0)  # two options in every comparison prompt


def test_predict_fn_returns_one_prediction_per_example_in_order(setup, reference):
    from flan_jax.training import in_loop_eval

    eval_set, config, params = setup
    _, _, tokens = reference
    predict_fn = in_loop_eval.make_predict_fn(params, config, DECODE, batch_size=BATCH)
    out = predict_fn(eval_set.evaluator.cached_model_datasets[TASK])
    assert [i for i, _ in out] == list(range(N))
    for (_, row), expected in zip(out, tokens):
        assert isinstance(row, list) and len(row) == DECODE
        assert row == expected.tolist()


def test_scores_match_independent_computation(setup, reference):
    from flan_jax.training import in_loop_eval

    eval_set, config, params = setup
    results = in_loop_eval.evaluate(params, config, {TASK: eval_set}, DECODE,
                                     batch_size=BATCH, step=0)
    expected = _score_by_hand(*reference)
    assert results == {TASK: pytest.approx(expected)}
    assert all(type(v) is float for v in results[TASK].values())


def test_nontrivial_scores_match(setup, reference, monkeypatch):
    """Decoding replaced by one that answers examples 0, 2, 4 correctly (a random model
    scores 0): the Evaluator's accuracy is 60%, as the metric functions give by hand."""
    from flan_jax.models import decoding
    from flan_jax.training import in_loop_eval

    eval_set, config, params = setup
    task, examples, _ = reference
    vocab = task.output_features["targets"].vocabulary
    answers = {}
    for k, ex in enumerate(examples):
        text = ex["targets_pretokenized"].decode() if k % 2 == 0 else "no idea"
        ids = vocab.encode(text)[:DECODE - 1] + [1]
        answers[tuple(int(t) for t in ex["inputs"])] = ids + [0] * (DECODE - len(ids))

    def fake_decode(params, inputs, *, config, max_decode_length):
        rows = [answers.get(tuple(int(t) for t in r[r > 0]), [0] * max_decode_length)
                for r in np.asarray(inputs)]
        return decoding.DecodeResult(np.array(rows, np.int32), np.zeros(len(rows)))

    monkeypatch.setattr(in_loop_eval, "greedy_decode", fake_decode)
    results = in_loop_eval.evaluate(params, config, {TASK: eval_set}, DECODE,
                                     batch_size=BATCH)
    fake_tokens = np.array([answers[tuple(int(t) for t in ex["inputs"])] for ex in examples])
    expected = _score_by_hand(task, examples, fake_tokens)
    assert expected["accuracy"] == pytest.approx(60.0)
    assert results == {TASK: pytest.approx(expected)}


def test_results_table_and_summary(setup, tmp_path, capsys):
    from flan_jax.training import in_loop_eval
    from flan_jax.training.report import Reporter, where_things_are

    eval_set, config, params = setup
    before = in_loop_eval.evaluate(params, config, {TASK: eval_set}, DECODE,
                                    batch_size=BATCH, step=0)
    after = {TASK: {"accuracy": 40.0, "rank_accuracy": 80.0}}
    report = Reporter(tmp_path, config, train_steps=1, batch_size=1, lengths=LENGTHS,
                      peak_flops=1e9, log_period=1, progress_bar=False, first_step=0)
    report.infer_eval(0, before)
    report.infer_eval(1, after)
    report.close()
    summary = report.finish({TASK: eval_set}, plot=True, trained_on=[], note="a test run")
    assert summary["tasks"][TASK] == {
        "group": "held out", "n": N, "chance": eval_set.chance, "majority": eval_set.majority,
        "untrained": before[TASK]["accuracy"], "trained": 40.0, "unseen": None,
        "rank_untrained": None, "rank_trained": 80.0}
    row = (f"| held out | {TASK} | {N} | 50.0% | {eval_set.majority:.1f}% | "
           f"{before[TASK]['accuracy']:.1f}% | 40.0% |  |  | 80.0% |")
    out = capsys.readouterr().out
    assert row in out
    markdown = (tmp_path / "results.md").read_text()
    assert row in markdown and "a test run" in markdown
    assert summary["verdict"] == "1 held-out tasks 40% decoded, 80% rank classification (chance 50%)"
    assert f"**Verdict:** {summary['verdict']}" in markdown
    where = where_things_are(tmp_path, "Finished.")
    for name in ("results.json", "results.md", "results.png", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
        assert str(tmp_path / name) in where


def test_unknown_or_unsuitable_eval_task_is_a_clear_error():
    from flan_jax.errors import FlanJaxError
    from flan_jax.training import in_loop_eval

    with pytest.raises(FlanJaxError, match="unknown task or mixture 'no_such_task'"):
        in_loop_eval.load_eval_set("no_such_task", "test", LENGTHS, 2)
    with pytest.raises(FlanJaxError, match="not mixtures"):
        in_loop_eval.load_eval_set("demo_submix", "test", LENGTHS, 2)
    with pytest.raises(FlanJaxError, match="no 'nope' split"):
        in_loop_eval.load_eval_set(TASK, "nope", LENGTHS, 2)


def test_majority_of_a_cot_task_is_its_commonest_final_answer():
    import re

    from flan_jax.training import in_loop_eval

    es = in_loop_eval.load_eval_set("demo_counting_zs_cot_unseen", "test",
                                     {"inputs": 128, "targets": 256}, 12)
    answers = [re.fullmatch(r".* So the answer is (\d+)\.", t, re.S).group(1)
               for t in es.targets]
    commonest = max(answers.count(a) for a in answers)
    assert es.majority == pytest.approx(100.0 * commonest / len(answers))
    assert es.chance is None  # no options in a CoT prompt
