"""Two layouts of the layer parameters: per-layer and scanned.

Per-layer (t5x's and Hugging Face's, and every checkpoint's): `encoder/layers_0/...`,
`encoder/layers_1/...`. Scanned (`T5Config.scan_layers`): `encoder/layers/...`, each leaf
the per-layer leaves stacked on a new leading axis. The functions here convert any tree
that holds parameter-shaped dicts (parameters, gradients, optimizer state) between the
two, leaf by leaf, so a checkpoint written in one layout restores into the other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from flan_jax.models.config import T5Config

STACKED = "layers"  # the key of a stack's scanned layers, whose leaves lead with 'layers'
_LAYER = re.compile(r"layers_(\d+)$")


def _stack(leaves: list[Any]) -> Any:
    if isinstance(leaves[0], jax.ShapeDtypeStruct):
        first = leaves[0]
        return jax.ShapeDtypeStruct((len(leaves),) + tuple(first.shape), first.dtype)
    xp = np if all(isinstance(x, np.ndarray) for x in leaves) else jax.numpy
    return xp.stack(leaves)


def _unstack(leaf: Any, count: int) -> list[Any]:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return [jax.ShapeDtypeStruct(tuple(leaf.shape[1:]), leaf.dtype)] * count
    return [leaf[i] for i in range(count)]


def _map_dicts(tree: Any, fn: Callable[[dict], dict]) -> Any:
    """`tree` with `fn` applied to every dict in it, innermost first (through tuples,
    lists and NamedTuples such as optax's states)."""
    if isinstance(tree, Mapping):
        return fn({k: _map_dicts(v, fn) for k, v in tree.items()})
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_map_dicts(v, fn) for v in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map_dicts(v, fn) for v in tree)
    return tree


def _stack_dict(d: dict) -> dict:
    layers = sorted((int(m.group(1)), k) for k in d if (m := _LAYER.match(k)))
    if not layers:
        return d
    if [i for i, _ in layers] != list(range(len(layers))) or STACKED in d:
        raise ValueError(f"cannot stack layers {[k for _, k in layers]}: expected layers_0 .. "
                         f"layers_{len(layers) - 1} and no '{STACKED}' key")
    out = {k: v for k, v in d.items() if not _LAYER.match(k)}
    out[STACKED] = jax.tree_util.tree_map(lambda *xs: _stack(list(xs)),
                                          *(d[k] for _, k in layers))
    return out


def _unstack_dict(d: dict) -> dict:
    if STACKED not in d:
        return d
    leaves, treedef = jax.tree_util.tree_flatten(d[STACKED])
    count = leaves[0].shape[0]
    columns = [_unstack(leaf, count) for leaf in leaves]
    out = {k: v for k, v in d.items() if k != STACKED}
    for i in range(count):
        out[f"layers_{i}"] = jax.tree_util.tree_unflatten(treedef, [c[i] for c in columns])
    return out


def is_scanned(tree: Any) -> bool:
    """Whether a parameter(-shaped) tree holds stacked layers."""
    if isinstance(tree, Mapping):
        return STACKED in tree or any(is_scanned(v) for v in tree.values())
    if isinstance(tree, (tuple, list)):
        return any(is_scanned(v) for v in tree)
    return False


def to_scanned(tree: Any) -> Any:
    """Per-layer `layers_{i}` dicts -> one stacked `layers` dict (a no-op if already)."""
    return _map_dicts(tree, _stack_dict)


def to_per_layer(tree: Any) -> Any:
    """Stacked `layers` dicts -> `layers_0` ... (a no-op if already per-layer)."""
    return _map_dicts(tree, _unstack_dict)


def for_config(tree: Any, config: T5Config) -> Any:
    """`tree` in the layout `config` builds (`config.scan_layers`)."""
    return to_scanned(tree) if config.scan_layers else to_per_layer(tree)


def is_stacked_path(path: tuple) -> bool:
    """Whether a `jax.tree_util` key path leads to a stacked leaf (its axis 0 is layers)."""
    return any(getattr(k, "key", None) == STACKED for k in path)
