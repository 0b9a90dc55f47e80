"""Flan 2021 structure-to-text, translation, text-formatting and math tasks
(tasks/flan2021/{struct_to_text,translation,text_formatting,math}.yaml), rendered from
their real TFDS builders under tfds.testing.mock_data, plus unit tests of their parsers
(flan_jax/data/collections/flan2021_gen.py) on hand-written examples in the TFDS structure."""

import types

import pytest
import seqio
import tensorflow_datasets as tfds

from flan_jax.data.collections import flan2021_gen as gen
from flan_jax.data.datasource import TaskData
from flan_jax.data.registry import CATALOG_DIR, load_catalog, register_catalog
from flan_jax.data.templates import Renderer, fill

FILES = [CATALOG_DIR / "flan2021" / name for name in
         ("struct_to_text.yaml", "translation.yaml", "text_formatting.yaml", "math.yaml")]
NUM_EXAMPLES = 3
LENGTHS = {"inputs": 4096, "targets": 1024}
PAIRS = {"para_crawl": ["es"], "wmt14": ["fr"], "wmt16": ["de", "tr", "cs", "fi", "ro", "ru"]}
FORMATTING = ("flan2021_true_case", "flan2021_fix_punct", "flan2021_word_segment")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(FILES)


@pytest.fixture(scope="module")
def registered(catalog):
    return register_catalog(catalog)


@pytest.fixture
def mock_tfds():
    with tfds.testing.mock_data(num_examples=NUM_EXAMPLES,
                                policy=tfds.testing.MockPolicy.USE_CODE):
        yield


def _translation_names():
    return [f"flan2021_{family}_{a}_{b}" for family, langs in PAIRS.items()
            for lang in langs for a, b in ((lang, "en"), ("en", lang))]


# ------------------------------------------------------------------ catalog shape

def test_catalog_has_every_task_with_enough_templates(catalog):
    expected = {
        "flan2021_gem_wiki_lingua_english_en", "flan2021_gem_common_gen", "flan2021_gem_dart",
        "flan2021_gem_e2e_nlg", "flan2021_gem_web_nlg_en", "flan2021_math_algebra_linear_1d",
        *FORMATTING, *_translation_names()}
    assert set(catalog.tasks) == expected
    for name, spec in catalog.tasks.items():
        assert spec.collection == "flan2021", name
        assert "opt" not in spec.templates, name
        assert len(spec.templates["noopt"]) >= 10, name
        assert len(set(spec.templates["noopt"])) == len(spec.templates["noopt"]), name
        assert spec.few_shot is not None and spec.few_shot.k == 3, name
        assert len(spec.few_shot.patterns) >= 10, name
        if name.startswith("flan2021_gem") or name.startswith("flan2021_math"):
            assert len(spec.templates["inv"]) >= 5, name
        else:
            assert "inv" not in spec.templates, name
        metric = ("rouge" if "gem" in name else "accuracy" if "math" in name
                  else "edit_distance" if name in FORMATTING else "bleu")
        assert spec.metrics == (metric,), name


# ------------------------------------------------------------------ rendering (mock data)

def test_every_template_and_style_renders(catalog, mock_tfds):
    for name, spec in catalog.tasks.items():
        data = TaskData(spec)
        examples = list(data.examples("train"))
        assert len(examples) == NUM_EXAMPLES, name
        for group, templates in spec.templates.items():
            for i, template in enumerate(templates):
                for _, fields in examples:
                    inputs, targets = fill(template, fields, None)
                    assert inputs.strip() and isinstance(targets, str), (name, group, i)
        pool = examples  # the train split, as TaskData.pool would read it again
        for style in spec.styles:
            renderer = Renderer(spec, style)
            for index, fields in examples:
                rendered = renderer.render(fields, index, pool=pool, query_in_pool=True)
                template = renderer.templates[rendered.template_idx]
                query, target = fill(template, fields, None)
                assert rendered.targets == target, (name, style)
                assert query in rendered.inputs, (name, style)


def test_seqio_tasks_build_from_mock_tfds(registered, mock_tfds):
    names = [spec.task_name("zs_noopt") for name, spec in registered.tasks.items()
             if name not in _translation_names()]
    names += ["flan2021_wmt16_de_en_zs_noopt", "flan2021_para_crawl_en_es_fs_noopt",
              "flan2021_gem_dart_fs_inv", "flan2021_math_algebra_linear_1d_fs_noopt"]
    for name in names:
        task = seqio.get_mixture_or_task(name)
        rows = list(task.get_dataset(LENGTHS, split="train", shuffle=False).as_numpy_iterator())
        assert len(rows) == NUM_EXAMPLES, name
        for row in rows:
            assert row["_task_name"].decode() == name
            assert row["inputs"].size > 1 and row["targets"][-1] == 1


def test_translation_direction_matches_the_raw_example(catalog, mock_tfds):
    for name in _translation_names():
        spec = catalog.tasks[name]
        src, tgt = name.split("_")[-2:]
        raw = list(tfds.as_numpy(tfds.builder(spec.source.name).as_dataset(
            split=spec.source.splits["train"], shuffle_files=False)))
        assert raw[0][src] != raw[0][tgt]
        examples = list(TaskData(spec).examples("train"))
        assert len(examples) == len(raw) == NUM_EXAMPLES
        renderer = Renderer(spec, "zs_noopt")
        for (index, fields), ex in zip(examples, raw):
            source, target = ex[src].decode().strip(), ex[tgt].decode().strip()
            assert fields == {"source": source, "target": target,
                              "source_lang": gen.LANGUAGES[src], "target_lang": gen.LANGUAGES[tgt]}
            rendered = renderer.render(fields, index)
            assert source in rendered.inputs and target not in rendered.inputs, name
            assert rendered.targets == target, name


# ------------------------------------------------------------------ text formatting slices

def _absolute(split: str, n: int) -> range:
    (instr,) = tfds.core.ReadInstruction.from_spec(split).to_absolute(
        {"train": types.SimpleNamespace(num_examples=n)})
    start = instr.from_ or 0
    return range(start, n if instr.to is None else instr.to)


def test_text_formatting_tasks_read_disjoint_slices_of_one_split(catalog):
    splits = []
    for name in FORMATTING:
        source = catalog.tasks[name].source
        assert source.name == "para_crawl/enda:1.2.0"
        splits += source.splits.values()
    for n in (20, 1_000, 2_414_895):
        ranges = sorted((_absolute(s, n) for s in splits), key=lambda r: r.start)
        assert n < 100 or all(len(r) > 0 for r in ranges), n
        assert ranges[0].start == 0 and ranges[-1].stop == n
        for a, b in zip(ranges, ranges[1:]):
            assert a.stop == b.start, (n, a, b)  # contiguous and disjoint
    for name in FORMATTING:
        train = _absolute(catalog.tasks[name].source.splits["train"], 2_414_895)
        assert 0.31 < len(train) / 2_414_895 < 0.34, name


class _TwentyExamples(tfds.testing.DummyDatasetSharedGenerator, skip_registration=True):
    """A really prepared 20-example train split (x = 0..19); no checksums file to look up."""

    url_infos = None


def test_tfds_reads_the_slices_disjointly(catalog, tmp_path):
    builder = _TwentyExamples(data_dir=str(tmp_path))
    builder.download_and_prepare()
    seen = {}
    for name in FORMATTING:
        for split in catalog.tasks[name].source.splits.values():
            if not _absolute(split, 20):  # a 1% validation slice of 20 examples is empty
                continue
            xs = [int(ex["x"]) for ex in tfds.as_numpy(builder.as_dataset(split=split))]
            assert xs, split
            seen[split] = set(xs)
        train = catalog.tasks[name].source.splits["train"]
        assert len(seen[train]) >= 6, (name, seen[train])
    union = set().union(*seen.values())
    assert union == set(range(20))
    assert sum(len(v) for v in seen.values()) == 20  # no example in two slices


def test_text_formatting_transformations():
    raw = {"en": "  Mr. O'Neil visited Paris, France — in May 2019!  ", "da": "x"}
    assert gen.truecase(raw) == {"lowercased": "mr. o'neil visited paris, france — in may 2019!",
                                 "sentence": "Mr. O'Neil visited Paris, France — in May 2019!"}
    assert gen.punctuate(raw) == {"unpunctuated": "Mr ONeil visited Paris France in May 2019",
                                  "sentence": "Mr. O'Neil visited Paris, France — in May 2019!"}
    assert gen.segment(raw) == {"unsegmented": "Mr.O'NeilvisitedParis,France—inMay2019!",
                                "sentence": "Mr. O'Neil visited Paris, France — in May 2019!"}
    assert gen.remove_punctuation("«Hello», she said... “Yes?” $5 + 10%") == \
        "Hello she said Yes $5 + 10"
    assert gen.remove_spaces("a b\tc\nd") == "abcd"


# ------------------------------------------------------------------ parsers

def test_gem_parsers_on_tfds_shaped_examples():
    web = {"gem_id": "web_nlg_en-train-0", "category": "Airport", "webnlg_id": "Id1",
           "input": ['Aarhus_Airport | cityServed | "Aarhus, Denmark"',
                     "Aarhus_Airport | elevationAboveTheSeaLevel_(in_metres) | 25.0"],
           "target": "Aarhus Airport serves Aarhus, Denmark.", "references": []}
    assert gen.web_nlg(web) == {
        "data": "Aarhus Airport | city served | Aarhus, Denmark; "
                "Aarhus Airport | elevation above the sea level (in metres) | 25.0",
        "target": "Aarhus Airport serves Aarhus, Denmark."}

    dart = {"dart_id": 3, "tripleset": ["Mars Hill College JOINED 1973",
                                        "Mars_Hill_College LOCATION Mars Hill, North Carolina"],
            "subtree_was_extended": False, "target_sources": ["webnlg"], "target": "",
            "references": ["Mars Hill College joined in 1973.", "Another reference."]}
    assert gen.dart(dart) == {
        "data": "Mars Hill College JOINED 1973; Mars Hill College LOCATION Mars Hill, North Carolina",
        "target": "Mars Hill College joined in 1973."}

    e2e = {"meaning_representation": "name[The Eagle], eatType[coffee shop], "
                                     "customer rating[3 out of 5], near[Burger King]",
           "target": "The Eagle is a coffee shop near Burger King.", "references": []}
    assert gen.e2e_nlg(e2e) == {
        "data": "name: The Eagle; eat type: coffee shop; customer rating: 3 out of 5; "
                "near: Burger King",
        "target": "The Eagle is a coffee shop near Burger King."}
    odd = gen.e2e_nlg({"meaning_representation": " not  a representation ", "target": "t"})
    assert odd == {"data": "not a representation", "target": "t"}

    common = {"concept_set_id": 7, "concepts": ["dog", "frisbee", "catch", "throw"],
              "target": "A dog leaps to catch a thrown frisbee.", "references": []}
    assert gen.common_gen(common) == {"concepts": "dog, frisbee, catch, throw",
                                      "target": "A dog leaps to catch a thrown frisbee."}
    lingua = {"source": " Mix flour and water. Knead. ", "target": "Make dough.",
              "source_aligned": {"en": "x"}, "target_aligned": {"en": "y"}, "references": []}
    assert gen.wiki_lingua(lingua) == {"text": "Mix flour and water. Knead.", "summary": "Make dough."}


def test_translation_and_math_parsers():
    pair = {"de": "Guten Morgen.", "en": " Good morning. "}
    assert gen.translate_de_en(pair) == {"source": "Guten Morgen.", "target": "Good morning.",
                                         "source_lang": "German", "target_lang": "English"}
    assert gen.translate_en_de(pair)["target"] == "Guten Morgen."
    assert gen.translate_en_de.__name__ == "translate_en_de"
    with pytest.raises(Exception, match="'ru'"):
        gen.translate_ru_en(pair)

    wrapped = {"question": "b'Solve -3*x + 12 = 0 for x.\\n'", "answer": "b'4\\n'"}
    assert gen.math_qa(wrapped) == {"question": "Solve -3*x + 12 = 0 for x.", "answer": "4"}
    clean = {"question": b"Solve 5*b = -10 for b.", "answer": "-2"}
    assert gen.math_qa(clean) == {"question": "Solve 5*b = -10 for b.", "answer": "-2"}
