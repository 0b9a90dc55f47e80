"""Bad rows in real collections: skipped, counted, reported per task; fatal only past a limit.

Fixtures in the real NIv2 task-file layout reproduce the bad instances found in
allenai/natural-instructions (tests/fixtures/niv2_bad_instances): an output of [""] (task388),
an input of " " (task1195), integer outputs, and a task whose instances are mostly
unusable. The same policy holds in the tasks CLI, in seqio's pipeline and in the trainer
(tests/test_train.py).
"""

from __future__ import annotations

import logging

import pytest
import seqio
import tensorflow as tf

from flan_jax import tasks
from flan_jax.data import bad_rows
from flan_jax.data.datasource import as_numpy
from flan_jax.data.registry import get_mixture_or_task, load_catalog, register_catalog
from flan_jax.errors import CatalogError, DataFormatError, FlanJaxError

from conftest import FIXTURES

BAD = FIXTURES / "niv2_bad_instances"
LENGTHS = {"inputs": 256, "targets": 32}
COLOURS, CAPS, COUNTS, REVERSE = (
    "niv2_task388_toy_colour_naming", "niv2_task1195_toy_sentence_capitalization",
    "niv2_task1400_toy_letter_counting", "niv2_task1401_toy_reverse_spelling")


@pytest.fixture
def niv2(monkeypatch):
    monkeypatch.setenv("FLAN_JAX_NIV2_DIR", str(BAD))
    monkeypatch.delenv("FLAN_JAX_NIV2_TASKS", raising=False)
    return monkeypatch


def _lines(capsys) -> dict[str, str]:
    out = capsys.readouterr().out.splitlines()
    return {line.split()[1].rstrip(":"): line for line in out[:-1]} | {"summary": out[-1]}


def test_check_reads_and_renders_every_row_and_reports_bad_ones(niv2, capsys):
    assert tasks.main(["check", "niv2_submix"]) == 1
    lines = _lines(capsys)
    assert lines[f"{COLOURS}_zs_opt"] == (
        f"OK       {COLOURS}_zs_opt: 20 rows read, 19 rendered; skipped 1 empty: Instances[7] "
        "(id 'task388-007'): field 'output' has no non-empty answer ([''])")
    assert lines[f"{CAPS}_fs_opt"].endswith(
        "20 rows read, 19 rendered; skipped 1 empty: Instances[12] (id 'task1195-012'): "
        "field 'input' is empty (' ')")
    assert lines[f"{COUNTS}_zs_opt"].endswith("20 rows read, 20 rendered")  # numbers as text
    failed = lines[f"{REVERSE}_zs_opt"]
    assert failed.startswith(f"FAIL     {REVERSE}_zs_opt: task '{REVERSE}' (NIv2 task file ")
    assert "task1401_toy_reverse_spelling.json), split 'train': 3 of the 8 rows read are " \
           "malformed, more than the limit of 5%" in failed
    assert "Instances[1] (id 'task1401-001'): field 'output' should be a non-empty list of " \
           "strings, got {'text': 'neerg'}" in failed
    assert lines["summary"] == ("6 of 8 tasks can read and render their data; 4 skipped some "
                                "rows (empty, or malformed within the limit)")
    # A sample reads only the first N rendered rows of each task.
    assert tasks.main(["check", f"{COLOURS}_zs_opt", "--sample", "5"]) == 0
    assert "5 rows read, 5 rendered" in capsys.readouterr().out


def test_niv2_submix_trains_through_seqio_past_bad_instances(niv2, caplog):
    niv2.setenv("FLAN_JAX_NIV2_TASKS", "splits/within_limit.txt")
    register_catalog(load_catalog())
    ds = seqio.get_dataset("niv2_submix", task_feature_lengths=LENGTHS, dataset_split="train",
                           shuffle=False, num_epochs=None,
                           feature_converter=seqio.EncDecFeatureConverter(pack=True))
    assert sum(1 for _ in as_numpy(ds.take(200))) == 200  # endless, as in training
    mixture = get_mixture_or_task("niv2_submix")
    sizes = {t.name: sum(1 for _ in as_numpy(t.get_dataset(LENGTHS, split="train",
                                                             shuffle=False)))
             for t in mixture.tasks}
    assert sizes == {f"{name}_{style}": n for name, n in ((COLOURS, 19), (CAPS, 19),
                                                           (COUNTS, 20))
                     for style in ("zs_opt", "fs_opt")}
    counts = {(r.task, r.malformed, r.empty) for r in bad_rows.reports() if r.split == "train"}
    assert counts == {(COLOURS, 0, 1), (CAPS, 0, 1), (COUNTS, 0, 0)}
    targets = [ex["targets"] for _, ex in zip(range(20), get_mixture_or_task(
        f"{COUNTS}_zs_opt").source.rendered("train"))]
    assert targets[:3] == ["3", "5", "4"]  # red, green, blue: integer outputs as text


def test_past_the_limit_one_message_in_seqio_pipelines(niv2, caplog):
    register_catalog(load_catalog())
    task = get_mixture_or_task(f"{REVERSE}_zs_opt")
    ds = task.get_dataset(LENGTHS, split="train", shuffle=False)
    message = r"task 'niv2_task1401_toy_reverse_spelling' .*3 of the 8 rows read are malformed"
    with pytest.raises(DataFormatError, match=message):  # flan_jax's own consumers
        list(as_numpy(ds))
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(tf.errors.OpError, match=message):
        list(ds.as_numpy_iterator())  # a plain tf.data consumer (t5x): the message is logged
    logged = [r.getMessage() for r in caplog.records if r.name == "flan_jax.data.datasource"]
    assert len(logged) == 1 and "3 of the 8 rows read are malformed" in logged[0]


def test_the_limit_is_configurable_per_source_or_environment(niv2, tmp_path, capsys):
    niv2.setenv("FLAN_JAX_MAX_MALFORMED", "0.5")
    assert tasks.main(["check", f"{REVERSE}_zs_opt"]) == 0
    assert "8 rows read, 5 rendered; skipped 3 malformed" in capsys.readouterr().out
    niv2.setenv("FLAN_JAX_MAX_MALFORMED", "half")
    with pytest.raises(CatalogError, match="FLAN_JAX_MAX_MALFORMED: expected a fraction"):
        bad_rows.max_malformed(None)
    assert bad_rows.max_malformed(0.25) == 0.25  # a source's own max_malformed wins
    yaml = tmp_path / "t.yaml"
    yaml.write_text("tasks:\n  - name: t\n    source: {files: tsv, columns: [a], max_malformed: 2,"
                    " splits: {train: a.tsv}}\n    templates: {noopt: [{input: '{a}', target: "
                    "'{a}'}]}\n")
    with pytest.raises(CatalogError, match=r"source.max_malformed: expected a fraction"):
        load_catalog([yaml])


def test_unknown_names_suggest_the_closest(capsys):
    assert tasks.main(["check", "demo_submx"]) == 2
    err = capsys.readouterr().err
    assert "unknown task or mixture 'demo_submx'" in err and "did you mean demo_submix" in err
    assert tasks.main(["stats", "cot_submx"]) == 2
    assert "unknown mixture 'cot_submx'" in capsys.readouterr().err
    register_catalog(load_catalog())
    with pytest.raises(FlanJaxError, match="did you mean demo_arithmetic_zs_opt"):
        get_mixture_or_task("demo_arithmetic_zs_op")
