"""The Flan 2022 / Flan-T5 top-level mixtures: collection weights, caps, scaling steps and
the CoT ablation, computed with stand-in example counts (no data needed)."""

import collections

import pytest

from flan_jax.data import mixing
from flan_jax.data.registry import load_catalog

NIV2_TASKS = 450  # a synthetic NIv2 directory: enough for the 400-task scaling subset
GSM8K_COUNT = 250_000  # above the CoT cap of 100,000
DEFAULT_COUNT = 50_000  # above the NIv2 and T0 caps, below the Flan and CoT caps


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    niv2 = tmp_path_factory.mktemp("niv2")
    (niv2 / "tasks").mkdir()
    # Ids from 1000 up: clear of the MMLU-derived ids that the collection excludes.
    for i in range(NIV2_TASKS):
        (niv2 / "tasks" / f"task{1000 + i}_synthetic_{i}.json").write_text("{}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLAN_JAX_NIV2_DIR", str(niv2))
        yield load_catalog()


def count(task: str) -> int:
    return GSM8K_COUNT if task.startswith("cot_gsm8k_") else DEFAULT_COUNT


def by_collection(catalog, shares):
    styles = catalog.task_styles()
    out = collections.defaultdict(float)
    for task, share in shares.items():
        out[styles[task][0].collection] += share
    return dict(out)


def definitions(catalog, mixture):
    styles = catalog.task_styles()
    return {styles[t][0].name for t in mixing.all_members(catalog, mixture)}


def test_flan2022_collection_weights(catalog):
    shares = mixing.shares(catalog, "flan2022_submix", count)
    assert sum(shares.values()) == pytest.approx(1)
    assert by_collection(catalog, shares) == pytest.approx(
        {"flan2021": 0.40, "t0": 0.32, "niv2": 0.20, "cot": 0.05, "dialog": 0.03})


def test_cot_cap_and_inversion_weight_inside_flan2022(catalog):
    shares = mixing.shares(catalog, "flan2022_submix", count)
    # cot_submix = cot_zs 1 : cot_fs 1 : cot_zs_inv 0.3 : cot_fs_inv 0.3; inside cot_zs the
    # 9 tasks weigh min(cap, n): gsm8k 100,000 (capped), the 8 others 50,000 each.
    cot_zs = 0.05 * 1 / 2.6
    assert shares["cot_gsm8k_zs_cot"] == pytest.approx(cot_zs * 100_000 / (100_000 + 8 * 50_000))
    assert shares["cot_creak_zs_cot"] == pytest.approx(cot_zs * 50_000 / (100_000 + 8 * 50_000))
    assert shares["cot_gsm8k_zs_inv"] == pytest.approx(
        0.05 * 0.3 / 2.6 * 100_000 / (100_000 + 8 * 50_000))


def test_niv2_and_t0_caps_make_their_tasks_equal(catalog):
    shares = mixing.shares(catalog, "flan2022_submix", count)
    niv2 = [s for t, s in shares.items() if t.startswith("niv2_")]
    assert len(niv2) == 2 * NIV2_TASKS  # zs_opt and fs_opt of every task
    assert niv2 == pytest.approx([0.20 / len(niv2)] * len(niv2))
    t0_zsopt = [s for t, s in shares.items() if t.startswith("t0_") and t.endswith("_zs_opt")]
    assert len(t0_zsopt) == 193
    assert t0_zsopt == pytest.approx([0.32 / 4 / 193] * 193)


def test_flan_paper_mixture(catalog):
    shares = mixing.shares(catalog, "flan_paper_submix", count)
    total = 46.0 + 27.9 + 24.2 + 1.8
    assert by_collection(catalog, shares) == pytest.approx(
        {"flan2021": 46.0 / total, "t0": 27.9 / total, "niv2": 24.2 / total, "cot": 1.8 / total})


def test_task_count_scaling_steps(catalog):
    cot = definitions(catalog, "flan_scaling_9_tasks")
    assert len(cot) == 9
    muffin = definitions(catalog, "flan2021_submix")
    t0 = definitions(catalog, "t0_submix")
    niv2 = definitions(catalog, "niv2_submix")
    assert definitions(catalog, "flan_scaling_89_tasks") == cot | muffin
    assert definitions(catalog, "flan_scaling_282_tasks") == cot | muffin | t0
    subset = definitions(catalog, "niv2_400_submix")
    assert len(subset) == 400 and subset < niv2
    first_400 = sorted(niv2, key=lambda n: int(n.split("_")[1][len("task"):]))[:400]
    assert subset == set(first_400)
    assert definitions(catalog, "flan_scaling_682_tasks") == cot | muffin | t0 | subset
    assert definitions(catalog, "flan_scaling_1836_tasks") == cot | muffin | t0 | niv2
    assert len(t0) == 193 and len(niv2) == NIV2_TASKS


def test_cot_ablation(catalog):
    non_cot = by_collection(catalog, mixing.shares(catalog, "flan_ablation_non_cot", count))
    assert "cot" not in non_cot and sum(non_cot.values()) == pytest.approx(1)
    assert by_collection(catalog, mixing.shares(catalog, "flan_ablation_cot_only", count)) == \
        pytest.approx({"cot": 1.0})
    assert mixing.shares(catalog, "flan_ablation_cot_and_non_cot", count) == pytest.approx(
        mixing.shares(catalog, "flan_paper_submix", count))


def test_stats_prints_flan2022_offline_with_declared_flan2021_sizes(tmp_path, monkeypatch,
                                                                    capsys):
    """No data at all: the Flan 2021 TFDS tasks' published train sizes are declared, T0's
    too; NIv2, CoT and Dialog (sizes unknown without data) are listed as such."""
    from flan_jax import tasks

    for env in ("FLAN_JAX_NIV2_DIR", "FLAN_JAX_COT_DIR", mixing.DROP_MISSING_ENV):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "no_tfds_data"))
    assert tasks.main(["stats", "flan2022_submix"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {x.split()[0]: x.split()[1:] for x in lines[2:] if x.split()[0].count("_") > 1}
    # TFDS catalog sizes; a split slice (para_crawl train[0%:32%]) with TFDS's rounding.
    assert rows["flan2021_cola_zs_opt"][:2] == ["8,551", "declared"]
    assert rows["flan2021_story_cloze_zs_opt"][:2] == ["1,871", "declared"]  # its validation
    assert rows["flan2021_true_case_zs_noopt"][:2] == ["772,766", "declared"]
    assert rows["flan2021_wmt16_ru_en_zs_noopt"][:2] == ["2,516,162", "declared"]
    assert rows["cot_gsm8k_zs_cot"][:3] == ["-", "no", "data"]
    flan2021 = [r for name, r in rows.items() if name.startswith("flan2021_")]
    assert flan2021 and all(r[1] == "declared" for r in flan2021)
    # Flan 2021 and T0 keep their 0.40 : 0.32 weights once the others are left out.
    share = sum(float(r[-1]) for r in flan2021)
    assert share == pytest.approx(100 * 0.40 / 0.72, abs=0.1)  # rows print 3 decimals
    assert any(x.startswith("count from: declared") and "no data" in x for x in lines)
