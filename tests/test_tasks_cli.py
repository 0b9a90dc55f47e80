"""`python -m flan_jax.tasks` on the toy catalog."""

import csv
import os
import subprocess
import sys

import pytest

from flan_jax import tasks

from conftest import FIXTURES


@pytest.fixture(autouse=True)
def toy_paths(monkeypatch):
    monkeypatch.setenv("FLAN_JAX_TASK_PATHS", str(FIXTURES / "toy"))


def run(capsys, *argv):
    code = tasks.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_filters_by_style(capsys):
    code, out, _ = run(capsys, "list", "--collection", "toy", "--style", "zs_inv")
    assert code == 0
    assert "toy_capital_zs_inv" in out and "toy_add_zs_opt" not in out
    assert out.strip().endswith("1 tasks")


def test_show_prints_source_templates_and_shares(capsys):
    code, out, _ = run(capsys, "show", "toy_add")
    assert code == 0
    assert "add_train.jsonl" in out and "[opt] 3 templates" in out
    assert "in mixture toy_opt: 100.000% of examples" in out


def test_preview_is_seeded(capsys):
    _, first, _ = run(capsys, "preview", "toy_add_fs_opt", "-n", "3", "--seed", "5")
    _, again, _ = run(capsys, "preview", "toy_add_fs_opt", "-n", "3", "--seed", "5")
    _, other, _ = run(capsys, "preview", "toy_add_fs_opt", "-n", "3", "--seed", "6")
    assert first == again != other
    assert first.count("=== [") == 3 and "--- targets:" in first


def test_preview_picks_a_split_the_task_has_and_says_which(capsys):
    # toy_json_eval has dev and test splits only.
    code, out, err = run(capsys, "preview", "toy_json_eval_zs_noopt", "-n", "2")
    assert code == 0
    assert out.count("split=dev ") == 2 and "What colour is a ripe banana?" in out
    assert "toy_json_eval_zs_noopt has no 'train' split (it has dev, test): previewing 'dev'" \
        in err
    code, out, err = run(capsys, "preview", "toy_json_eval_zs_noopt", "-n", "1",
                         "--split", "test")
    assert code == 0 and "split=test " in out and err == ""
    code, out, err = run(capsys, "preview", "toy_capital_zs_noopt", "-n", "1")
    assert code == 0 and "split=train " in out and err == ""
    assert tasks.preview_split(["test", "validation"], None) == "validation"
    code, _, err = run(capsys, "preview", "toy_json_eval_zs_noopt", "--split", "train")
    assert code == 2 and "has no split 'train' (it has: dev, test)" in err


def test_check_reports_each_task(capsys, tmp_path, monkeypatch):
    code, out, _ = run(capsys, "check", "toy_capital", "--split", "test")
    assert code == 0
    assert "OK       toy_capital_zs_noopt" in out and "4 of 4 tasks" in out
    data = tmp_path / "toy"
    data.mkdir()
    (data / "toy.yaml").write_text((FIXTURES / "toy" / "toy.yaml").read_text())
    monkeypatch.setenv("FLAN_JAX_TASK_PATHS", str(data))
    code, out, _ = run(capsys, "check", "toy_mix")
    assert code == 1
    assert "MISSING  toy_add_zs_noopt: data file not found" in out


def test_stats_and_csv(capsys, tmp_path):
    target = tmp_path / "shares.csv"
    code, out, _ = run(capsys, "stats", "toy_nested", "--csv", str(target))
    assert code == 0 and "toy_add_zs_opt" in out
    rows = list(csv.DictReader(target.open()))
    assert sum(float(r["share"]) for r in rows) == pytest.approx(1.0)
    code, out, _ = run(capsys, "stats")
    assert "templates/noopt" in out and "collection toy: 3 task definitions" in out


def test_unknown_name_is_a_clear_error(capsys):
    code, _, err = run(capsys, "preview", "no_such_task")
    assert code == 2 and "unknown task or mixture 'no_such_task'" in err


def test_runs_as_a_module_quietly():
    """Nothing on stderr: not TensorFlow's start-up notes (absl, oneDNN, CUDA) either."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "flan_jax.tasks", "list", "--style", "fs_inv"],
                            capture_output=True, text=True, check=True, env=env)
    assert "toy_capital_fs_inv" in result.stdout
    assert result.stderr == ""
