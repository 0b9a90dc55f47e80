"""Templates marked `held_out: true`: left out of NAME_STYLE (and so of every mixture),
rendered only by NAME_STYLE_unseen."""

from __future__ import annotations

import collections

import pytest
import seqio

from flan_jax.data.registry import load_catalog, register_catalog, task_families
from flan_jax.errors import CatalogError

YAML = """
tasks:
  - name: split_toy
    collection: split_toy
    source:
      generated: flan_jax.data.demo.generators:parity
      splits: {train: 60, test: 20}
    parser:
      fields: [question, answer, options]
    templates:
      opt:
        - {input: "SEEN-A {question} {options_}", target: "{answer}"}
        - {input: "HELD-B {question} {options_}", target: "{answer}", held_out: true}
        - {input: "SEEN-C {question} {options_}", target: "{answer}"}
        - {input: "HELD-D {question} {options_}", target: "{answer}", held_out: true}
      noopt:
        - {input: "PLAIN {question}", target: "{answer}"}
mixtures:
  - {name: split_toy_mix, collections: [split_toy]}
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "split.yaml"
    path.write_text(YAML)
    return register_catalog(load_catalog([path]))


def _templates(task: str) -> collections.Counter:
    rows = seqio.get_mixture_or_task(task).get_dataset(
        {"inputs": 256, "targets": 8}, split="train", shuffle=False).as_numpy_iterator()
    return collections.Counter((r["inputs_pretokenized"].decode().split()[0],
                                int(r["_template_idx"]), r["_task_name"].decode())
                               for r in rows)


def test_trained_task_renders_only_the_templates_not_held_out(catalog):
    seen = _templates("split_toy_zs_opt")
    assert {(w, i) for w, i, _ in seen} == {("SEEN-A", 0), ("SEEN-C", 2)}
    assert sum(seen.values()) == 60  # nothing dropped


def test_unseen_task_renders_only_the_held_out_templates(catalog):
    unseen = _templates("split_toy_zs_opt_unseen")
    assert {(w, i, n) for w, i, n in unseen} == {
        ("HELD-B", 1, "split_toy_zs_opt_unseen"), ("HELD-D", 3, "split_toy_zs_opt_unseen")}
    assert sum(unseen.values()) == 60


def test_unseen_tasks_stay_out_of_mixtures_and_exist_only_where_templates_are_held_out(catalog):
    spec = catalog.tasks["split_toy"]
    assert spec.unseen_styles() == ("zs_opt",)
    names = set(seqio.TaskRegistry.names())
    assert "split_toy_zs_opt_unseen" in names and "split_toy_zs_noopt_unseen" not in names
    members = {t.name for t in seqio.get_mixture_or_task("split_toy_mix").tasks}
    assert members == {"split_toy_zs_opt", "split_toy_zs_noopt"}


def test_every_style_and_its_unseen_templates_belong_to_the_task_definition(catalog):
    assert task_families(["split_toy_zs_opt", "split_toy_zs_opt_unseen", "split_toy_zs_noopt",
                          "not_in_the_catalog"], catalog) == {
        "split_toy_zs_opt": "split_toy", "split_toy_zs_opt_unseen": "split_toy",
        "split_toy_zs_noopt": "split_toy", "not_in_the_catalog": "not_in_the_catalog"}


def test_a_group_with_every_template_held_out_is_refused(tmp_path):
    bad = YAML.replace('{input: "PLAIN {question}", target: "{answer}"}',
                       '{input: "PLAIN {question}", target: "{answer}", held_out: true}')
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(CatalogError, match=r"templates\.noopt.*every template is marked "
                                           r"held_out"):
        load_catalog([tmp_path / "bad.yaml"])
    (tmp_path / "bad.yaml").write_text(YAML.replace("held_out: true", "held_out: yes please"))
    with pytest.raises(CatalogError, match="held_out.*expected bool"):
        load_catalog([tmp_path / "bad.yaml"])
