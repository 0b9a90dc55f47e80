"""`python -m flan_jax.tasks`: list, show, preview, check and size up the catalog.

  list [--collection C] [--style S]     one line per seqio task
  show NAME                             a task's source, templates and rates
  preview NAME [-n 5] [--seed S]        rendered inputs/targets with metadata, from the
          [--split S]                   train split (else validation, else the first)
  check [NAME ...] [--all] [--sample N] reads and renders every row (or the first N) of
                                        each task: one line per task, with skipped rows
  stats [MIXTURE] [--csv FILE]          per-task size (and where it comes from) and share;
                                        catalog size without MIXTURE

The data modules (and with them TensorFlow) are imported in the commands, after
`flan_jax.console.start` has quieted TensorFlow's start-up.
"""

from __future__ import annotations

import argparse
import collections
import csv
import itertools
import random
import statistics
import sys
from collections.abc import Iterator, Sequence

from flan_jax import console
from flan_jax.data import bad_rows
from flan_jax.data.schema import ALL_STYLES, TEMPLATE_GROUPS, Catalog
from flan_jax.errors import FlanJaxError, MissingDataError


def _seqio_names(catalog: Catalog, names: list[str]) -> list[str]:
    """Expands task definitions and mixtures to seqio task names."""
    from flan_jax.data import mixing, registry

    styles = catalog.task_styles()
    out: list[str] = []
    unseen = {spec.task_name(s, unseen=True) for spec in catalog.tasks.values()
              for s in spec.unseen_styles()}
    for name in names:
        if name in styles or name in unseen:
            out.append(name)
        elif name in catalog.tasks:
            out.extend(catalog.tasks[name].task_name(s) for s in catalog.tasks[name].styles)
        elif name in catalog.mixtures:
            out.extend(mixing.all_members(catalog, name))
        else:
            raise registry.unknown_name(name, [*styles, *catalog.tasks, *catalog.mixtures])
    return list(dict.fromkeys(out))


def _task(name: str):
    import seqio

    return seqio.get_mixture_or_task(name)


def cmd_list(catalog: Catalog, args: argparse.Namespace) -> None:
    rows = [(name, spec.collection, style, len(spec.templates[style.split("_", 1)[1]]))
            for name, (spec, style) in catalog.task_styles().items()
            if (not args.collection or spec.collection == args.collection)
            and (not args.style or style == args.style)]
    width = max((len(r[0]) for r in rows), default=4)
    print(f"{'task':<{width}}  {'collection':<14} {'style':<9} templates")
    for name, collection, style, n in rows:
        print(f"{name:<{width}}  {collection:<14} {style:<9} {n}")
    print(f"{len(rows)} tasks")


def cmd_show(catalog: Catalog, args: argparse.Namespace) -> None:
    from flan_jax.data import mixing

    styles = catalog.task_styles()
    if args.name in catalog.mixtures:
        cmd_stats(catalog, argparse.Namespace(mixture=args.name, csv=None))
        return
    spec = styles[args.name][0] if args.name in styles else catalog.tasks.get(args.name)
    if spec is None:
        _seqio_names(catalog, [args.name])
    data = _task(spec.task_name(spec.styles[0])).source.data
    print(f"{spec.name}: {spec.description}")
    print(f"  defined in: {spec.file}")
    print(f"  collection: {spec.collection}    metrics: {', '.join(spec.metrics)}")
    print(f"  source:     {data.source.describe()}")
    print(f"  fields:     {', '.join(sorted(spec.parser.provided_fields()))}")
    print(f"  tasks:      {', '.join(spec.task_name(s) for s in spec.styles)}")
    if spec.unseen_styles():
        print("  held-out templates (never trained on): "
              f"{', '.join(spec.task_name(s, unseen=True) for s in spec.unseen_styles())}")
    for mixture in catalog.mixtures:
        members = mixing.all_members(catalog, mixture)
        if any(spec.task_name(s) in members for s in spec.styles):
            shares = mixing.shares(catalog, mixture, mixing.example_count)
            own = sum(shares.get(spec.task_name(s), 0.0) for s in spec.styles)
            print(f"  in mixture {mixture}: {100 * own:.3f}% of examples")
    for group, templates in spec.templates.items():
        held = sum(t.held_out for t in templates)
        print(f"\n  [{group}] {len(templates)} templates"
              + (f" ({held} held out of training, marked *)" if held else ""))
        for i, t in enumerate(templates):
            head = f"   {i:2d}{'*' if t.held_out else '.'} "
            if t.instruction:
                print(f"{head}instruction: {t.instruction!r}")
                head = " " * len(head)
            print(f"{head}input:  {t.input!r}\n       target: {t.target!r}")
    if spec.few_shot:
        fs = spec.few_shot
        print(f"\n  few-shot: k={fs.k} ({fs.select} of the first {fs.pool_size} {fs.split} "
              f"examples), budget={fs.budget} tokens")
        for p in fs.patterns:
            print(f"   - {p}")


def _rendered(name: str, split: str, seed: int | None) -> Iterator[dict]:
    from flan_jax.data.datasource import FlanDataSource

    source = _task(name).source
    fresh = FlanDataSource(source.data, source.style, _task(name).output_features[
        "inputs"].vocabulary, seed=seed, unseen=source.unseen)
    return fresh.rendered(split)


PREVIEW_SPLITS = ("train", "validation")  # preferred in this order, then the task's first


def preview_split(splits: Sequence[str], requested: str | None) -> str:
    """The split to preview: `requested`, else the first of PREVIEW_SPLITS the task has,
    else its first split."""
    if requested:
        return requested
    return next((s for s in PREVIEW_SPLITS if s in splits), next(iter(splits)))


def cmd_preview(catalog: Catalog, args: argparse.Namespace) -> None:
    from flan_jax.data import mixing

    names = _seqio_names(catalog, [args.name])
    if args.name in catalog.mixtures:
        weights = mixing.shares(catalog, args.name, mixing.example_count)
        names = [n for n in names if n in weights]
        rng = random.Random(args.seed or 0)
        picks = rng.choices(names, [weights[n] for n in names], k=args.n)
    else:
        picks = list(itertools.islice(itertools.cycle(names), args.n))
    streams: dict[str, tuple[str, Iterator[dict]]] = {}
    for i, name in enumerate(picks):
        if name not in streams:
            splits = list(_task(name).splits)
            split = preview_split(splits, args.split)
            if not args.split and split != PREVIEW_SPLITS[0]:
                print(f"{name} has no {PREVIEW_SPLITS[0]!r} split (it has {', '.join(splits)}): "
                      f"previewing {split!r}", file=sys.stderr)
            streams[name] = split, _rendered(name, split, args.seed)
        split, stream = streams[name]
        ex = next(stream, None)
        if ex is None:
            continue
        print(f"=== [{i}] {name}  split={split} index={ex['_example_index']} "
              f"template={ex['_template_idx']}")
        print(f"--- inputs:\n{ex['inputs']}\n--- targets:\n{ex['targets']}\n")


def _read_rows(task, split: str, sample: int | None) -> bad_rows.RowCounter | None:
    """Reads and renders a flan_jax task's rows (the first `sample` rendered ones, or all)
    as training would; None for a plain seqio task, which is not read."""
    source = task.source
    if not hasattr(source, "rendered"):
        return None
    counter = source.data.counter(split)
    for _ in itertools.islice(source.rendered(split, counter=counter), sample):
        pass
    counter.finish()
    return counter


def cmd_check(catalog: Catalog, args: argparse.Namespace) -> int:
    from flan_jax.data import mixing

    if not args.names and not args.all:
        raise FlanJaxError("name tasks/mixtures to check, or pass --all")
    names = list(catalog.task_styles()) if args.all else _seqio_names(catalog, args.names)
    tasks = [_task(n) for n in names]
    missing = mixing.find_missing(tasks, args.split)
    failed, skipped = 0, []
    for task in tasks:
        if args.split not in task.splits:
            print(f"SKIP     {task.name}: no {args.split!r} split")
            continue
        if task.name in missing:
            print(f"MISSING  {task.name}: {missing[task.name]}")
            failed += 1
            continue
        try:
            counter = _read_rows(task, args.split, args.sample)
        except FlanJaxError as e:  # its first line; a layout reminder may follow it
            print(f"FAIL     {task.name}: {str(e).splitlines()[0]}")
            failed += 1
            continue
        if counter is None:
            print(f"OK       {task.name}: a plain seqio task (its rows are not read here)")
            continue
        used = counter.rows - counter.malformed - counter.empty
        line = f"OK       {task.name}: {counter.rows:,} rows read, {used:,} rendered"
        if counter.malformed or counter.empty:
            skipped.append(task.name)
            kinds = ", ".join(f"{n:,} {what}" for n, what in ((counter.malformed, "malformed"),
                                                             (counter.empty, "empty")) if n)
            line += f"; skipped {kinds}: {'; '.join(counter.problems)}"
        print(line)
    summary = f"{len(tasks) - failed} of {len(tasks)} tasks can read and render their data"
    if skipped:
        summary += f"; {len(skipped)} skipped some rows (empty, or malformed within the limit)"
    print(summary + (f" (first {args.sample} rendered rows each)" if args.sample else ""))
    return 1 if failed else 0


def cmd_stats(catalog: Catalog, args: argparse.Namespace) -> None:
    from flan_jax.data import mixing, registry

    if not args.mixture:
        _catalog_size(catalog)
        return
    if args.mixture not in catalog.mixtures:
        raise registry.unknown_name(args.mixture, catalog.mixtures, "mixture")
    members = mixing.all_members(catalog, args.mixture)
    counts: dict[str, tuple[int, str]] = {}
    missing: dict[str, str] = {}
    for name in members:  # a task whose size needs data it lacks is left out, and said so
        try:
            counts[name] = mixing.counted(name)
        except MissingDataError as e:
            missing[name] = e.missing[name]
    shares = mixing.shares(catalog, args.mixture, lambda t: counts[t][0], exclude=missing)
    rows = [(name, *counts.get(name, (None, "no data")), 100.0 * shares.get(name, 0.0))
            for name in members]
    width = max(len(r[0]) for r in rows)
    print(f"mixture {args.mixture}: {len(rows)} tasks")
    print(f"{'task':<{width}}  {'train examples':>14}  {'count from':<14} {'share %':>8}")
    for name, n, origin, share in rows:
        shown = f"{n:>14,}" if n is not None else f"{'-':>14}"
        print(f"{name:<{width}}  {shown}  {origin:<14} {share:>8.3f}")
    origins = collections.Counter(origin for _, _, origin, _ in rows)
    print("count from: " + ", ".join(f"{origin} {n}" for origin, n in sorted(origins.items()))
          + " (declared: the published size in the task's YAML; measured: read once and "
          f"cached in {mixing.cache_file()})")
    if missing:
        training = (f"as training leaves them out ({mixing.DROP_MISSING_ENV}=1)"
                    if mixing.drop_missing() else
                    f"while training stops and lists them (unless {mixing.DROP_MISSING_ENV}=1)")
        print(f"{len(missing)} task(s) have neither their data nor a declared size and are left "
              f"out of the shares here, {training}:")
        for name, reason in list(missing.items())[:10]:
            print(f"  - {name}: {reason}")
        if len(missing) > 10:
            print(f"  - ... and {len(missing) - 10} more (`python -m flan_jax.tasks check "
                  f"{args.mixture}` lists them)")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["task", "train_examples", "count_from", "share"])
            writer.writerows((name, "" if n is None else n, origin, share / 100)
                             for name, n, origin, share in rows)
        print(f"wrote {args.csv}")


def _catalog_size(catalog: Catalog) -> None:
    styles = catalog.task_styles()
    print(f"{len(catalog.tasks)} task definitions, {len(styles)} seqio tasks, "
          f"{len(catalog.mixtures)} mixtures")
    for style in ALL_STYLES:
        count = sum(1 for _, s in styles.values() if s == style)
        if count:
            print(f"  {style:<9} {count:5d} tasks")
    for group in TEMPLATE_GROUPS:
        sizes = [len(s.templates[group]) for s in catalog.tasks.values() if group in s.templates]
        if sizes:
            print(f"  templates/{group:<6} min {min(sizes)}  mean {statistics.mean(sizes):.1f}  "
                  f"max {max(sizes)}  over {len(sizes)} task definitions")
    collections: dict[str, int] = {}
    for spec in catalog.tasks.values():
        collections[spec.collection] = collections.get(spec.collection, 0) + 1
    for name, count in sorted(collections.items()):
        print(f"  collection {name}: {count} task definitions")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flan_jax.tasks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(console.VERBOSE_FLAG, action="store_true", help=console.VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list seqio tasks")
    p.add_argument("--collection")
    p.add_argument("--style", choices=ALL_STYLES)
    p = sub.add_parser("show", help="show a task or mixture")
    p.add_argument("name")
    p = sub.add_parser("preview", help="render a few examples")
    p.add_argument("name")
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--seed", type=int, default=None, help="template seed (default: the task's)")
    p.add_argument("--split", help="split to render (default: train, else validation, else "
                   "the task's first split)")
    p = sub.add_parser("check", help="check that tasks can load their data")
    p.add_argument("names", nargs="*")
    p.add_argument("--all", action="store_true")
    p.add_argument("--split", default="train")
    p.add_argument("--sample", type=int, metavar="N",
                   help="read only the first N rendered rows of each task (default: all)")
    p = sub.add_parser("stats", help="mixture rates, or catalog size")
    p.add_argument("mixture", nargs="?")
    p.add_argument("--csv")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.start(args.verbose)
    from flan_jax.data import registry

    try:
        catalog = registry.load_catalog()
        if args.command in ("show", "preview", "check", "stats"):
            registry.register_catalog(catalog)
        command = {"list": cmd_list, "show": cmd_show, "preview": cmd_preview,
                   "check": cmd_check, "stats": cmd_stats}[args.command]
        return command(catalog, args) or 0
    except FlanJaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
