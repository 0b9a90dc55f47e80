"""The README's "Add a task" example: the YAML it shows is examples/my_tasks/my_tasks.yaml,
and that file's task and mixture work as the README says."""

import re

import pytest

from flan_jax import tasks

from conftest import REPO

EXAMPLE = REPO / "examples" / "my_tasks"


@pytest.fixture(autouse=True)
def example_paths(monkeypatch):
    monkeypatch.setenv("FLAN_JAX_TASK_PATHS", str(EXAMPLE))


def run(capsys, *argv):
    code = tasks.main(list(argv))
    return code, capsys.readouterr().out


def test_readme_shows_the_example_file():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert (EXAMPLE / "my_tasks.yaml").read_text() in blocks


def test_local_files_split_by_path_and_glob(capsys):
    code, out = run(capsys, "check", "my_nli", "--split", "test")
    assert code == 0
    # The test split is a glob over two files of 6 rows each.
    assert out.count("12 rows read, 12 rendered") == 4, out
    code, out = run(capsys, "check", "my_nli", "--split", "train")
    assert code == 0 and out.count("40 rows read, 40 rendered") == 4, out


def test_held_out_template_is_only_in_the_unseen_task(capsys):
    _, seen = run(capsys, "preview", "my_nli_zs_opt", "--split", "test", "-n", "12")
    _, unseen = run(capsys, "preview", "my_nli_zs_opt_unseen", "--split", "test", "-n", "4")
    assert "Can we say that" not in seen and "Does it follow that" in seen
    assert unseen.count("Can we say that") == unseen.count("=== [") > 0


def test_mixture_weights_set_the_shares(capsys):
    code, out = run(capsys, "stats", "my_mix")
    assert code == 0
    shares = {m[0]: float(m[1]) for m in re.findall(r"^(\S+)\s+[\d,]+\s+\w+\s+([\d.]+)$",
                                                    out, re.M)}
    # my_zs : my_fs : demo_zsopt = 2 : 1 : 1, split within each member by example counts
    # (my_zs: two styles of 40 rows; demo_zsopt: 8 families of 2,000).
    assert shares["my_nli_zs_opt"] == shares["my_nli_zs_noopt"] == pytest.approx(25.0)
    assert shares["my_nli_fs_opt"] == pytest.approx(25.0)
    demo = [v for k, v in shares.items() if k.startswith("demo_")]
    assert len(demo) == 8 and sum(demo) == pytest.approx(25.0)
