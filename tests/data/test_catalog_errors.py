"""Bad catalog files get a message naming the file, the field and the problem."""

import textwrap

import pytest

from flan_jax.data.registry import load_catalog
from flan_jax.errors import CatalogError

GOOD_TASK = """
  - name: {name}
    source:
      generated: flan_jax.data.demo.generators:arithmetic
      splits: {{train: 10}}
    parser:
      fields: [question, answer]
    templates:
      noopt:
        - {{input: "{{question}}", target: "{{answer}}"}}
"""


def write(tmp_path, text, name="bad.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_for(tmp_path, text) -> CatalogError:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as info:
        load_catalog([tmp_path])
    assert str(path) in str(info.value)
    return info.value


def test_unknown_field(tmp_path):
    err = error_for(tmp_path, "tasks:" + GOOD_TASK.format(name="a") + "    colection: x\n")
    assert err.field == "tasks[0].colection"
    assert "unknown field" in err.problem


def test_template_slot_not_provided(tmp_path):
    text = "tasks:" + GOOD_TASK.format(name="a").replace("{answer}", "{solution}")
    err = error_for(tmp_path, text)
    assert err.field == "tasks[0].templates.noopt[0].target"
    assert "{solution}" in err.problem and "question" in err.problem


def test_duplicate_name_across_files(tmp_path):
    write(tmp_path, "tasks:" + GOOD_TASK.format(name="same"), "a.yaml")
    write(tmp_path, "tasks:" + GOOD_TASK.format(name="same"), "b.yaml")
    with pytest.raises(CatalogError, match="duplicate name 'same'.*a.yaml"):
        load_catalog([tmp_path])


@pytest.mark.parametrize("weight", [0, -1.5, "lots"])
def test_mixture_weight_must_be_positive(tmp_path, weight):
    text = ("tasks:" + GOOD_TASK.format(name="a") +
            f"mixtures:\n  - {{name: m, tasks: [a_zs_noopt]}}\n"
            f"  - {{name: top, mixtures: {{m: {weight!r}}}}}\n")
    err = error_for(tmp_path, text)
    assert err.field == "mixtures[1].mixtures.m"
    assert "> 0" in err.problem


def test_cycle_in_nested_mixtures(tmp_path):
    text = ("tasks:" + GOOD_TASK.format(name="a") + "mixtures:\n"
            "  - {name: x, mixtures: {y: 1}}\n  - {name: y, mixtures: {z: 1}}\n"
            "  - {name: z, mixtures: {x: 1}}\n")
    err = error_for(tmp_path, text)
    assert "cycle" in err.problem and "x -> y -> z -> x" in err.problem


def test_opt_template_needs_options(tmp_path):
    text = "tasks:" + GOOD_TASK.format(name="a").replace("noopt:", "opt:")
    err = error_for(tmp_path, text)
    assert "{options_}" in err.problem


def test_unknown_metric_and_mixture_member(tmp_path):
    err = error_for(tmp_path, "tasks:" + GOOD_TASK.format(name="a") + "    metrics: [bleurt]\n")
    assert "unknown metric 'bleurt'" in err.problem
    err = error_for(tmp_path, "tasks:" + GOOD_TASK.format(name="a") +
                    "mixtures:\n  - {name: m, tasks: ['zz_*']}\n")
    assert "'zz_*' matches no task" in err.problem


def test_invalid_yaml_names_line(tmp_path):
    err = error_for(tmp_path, "tasks:\n  - name: [unclosed\n")
    assert "invalid YAML" in err.problem and err.field.startswith("line ")


def test_source_problems(tmp_path):
    text = "tasks:" + GOOD_TASK.format(name="a").replace(
        "generated: flan_jax.data.demo.generators:arithmetic", "tfds: super_glue/rte")
    assert "name/config:version" in error_for(tmp_path, text).problem
    text = "tasks:" + GOOD_TASK.format(name="a").replace("{train: 10}", "{train: 0}")
    assert error_for(tmp_path, text).field == "tasks[0].source.splits.train"


def test_options_slot_only_in_opt_templates(tmp_path):
    text = "tasks:" + GOOD_TASK.format(name="a").replace(
        "fields: [question, answer]", "fields: [question, answer, options]").replace(
        'input: "{question}"', 'input: "{question} {options_}"')
    err = error_for(tmp_path, text)
    assert err.field == "tasks[0].templates.noopt[0].input"
    assert "only by 'opt' templates" in err.problem


def test_metric_may_be_a_function_reference(tmp_path):
    write(tmp_path, "tasks:" + GOOD_TASK.format(name="a") +
          '    metrics: ["flan_jax.data.metrics:accuracy"]\n', "ok.yaml")
    spec = load_catalog([tmp_path]).tasks["a"]
    assert spec.metrics == ("flan_jax.data.metrics:accuracy",)
    from flan_jax.data.metrics import accuracy, get_metric
    assert get_metric(spec.metrics[0]) is accuracy
