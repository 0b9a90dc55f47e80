"""Device mesh, t5x logical axis rules, shardings, and multi-host helpers.

The mesh has two axes, `data` (batch) and `model` (tensor parallelism), built either
t5x-style from `num_partitions` (the size of `model`; `data` takes the remaining devices)
or from an explicit `mesh_shape=(data, model)`. Parameters carry t5x logical axis names
(`embed`, `mlp`, `heads`, `vocab`, ...); `LOGICAL_AXIS_RULES` maps them onto mesh axes the
way t5x's `standard_logical_axis_rules()` does. Everything is placed with
`jax.sharding.NamedSharding`; a dimension that a mesh axis does not divide is replicated.

Multi-host: `initialize_distributed()` calls `jax.distributed.initialize` when a
coordinator is configured (or always on Cloud TPU when `auto=True`); every host reads its
own slice of the data (`host_shard_info()`, a seqio `ShardInfo`) and
`global_batch()` assembles the per-host numpy batches into one global jax.Array.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import gin
import jax
import numpy as np
import seqio
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flan_jax.models.config import T5Config
from flan_jax.models.t5 import abstract_params, param_axes

AxisRules = Sequence[tuple[str, str | None]]

# t5x's standard rules (1-D parameter partitioning, data-parallel batch).
LOGICAL_AXIS_RULES: tuple[tuple[str, str | None], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("joined_kv", "model"),
    ("relpos_buckets", None),
    ("abspos_buckets", None),
    ("length", None),
    ("layers", None),
    ("stack", None),
    ("mlp_activations", None),
)


@gin.configurable(module="flan_jax.training.partitioning")
def make_mesh(num_partitions: int = 1, mesh_shape: Sequence[int] | None = None,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'model') mesh over `devices` (default: all devices of all hosts).

    `mesh_shape=(data, model)` wins over `num_partitions`; -1 in it means "the rest".
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    if mesh_shape is None:
        if num_partitions < 1 or n % num_partitions:
            raise ValueError(f"num_partitions={num_partitions} does not divide the {n} devices")
        shape = (n // num_partitions, num_partitions)
    else:
        shape = tuple(int(s) for s in mesh_shape)
        if len(shape) != 2:
            raise ValueError(f"mesh_shape must be (data, model), got {mesh_shape!r}")
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape = tuple(n // known if s == -1 else s for s in shape)
        if int(np.prod(shape)) != n:
            raise ValueError(f"mesh_shape {shape} needs {int(np.prod(shape))} devices, "
                             f"but {n} are available")
    auto = jax.sharding.AxisType.Auto  # shardings propagate through jit (not explicit types)
    return jax.make_mesh(shape, ("data", "model"), axis_types=(auto, auto), devices=devices)


def _fit(spec: P, shape: Sequence[int], mesh: Mesh) -> P:
    """`spec` with every mesh axis that does not divide its dimension dropped."""
    out = []
    for dim, axis in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axis,) if isinstance(axis, str) else tuple(axis or ())
        size = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        out.append(axis if size > 1 and dim % size == 0 else None)
    return P(*out)


def param_specs(config: T5Config, mesh: Mesh, rules: AxisRules = LOGICAL_AXIS_RULES) -> Any:
    """PartitionSpecs (mesh axes) of the parameter tree."""
    logical = param_axes(config)
    mesh_specs = nn.logical_to_mesh(logical, rules)
    shapes = abstract_params(config)
    return jax.tree_util.tree_map(lambda s, a: _fit(s, a.shape, mesh), mesh_specs, shapes,
                                  is_leaf=lambda x: isinstance(x, P))


def param_shardings(config: T5Config, mesh: Mesh, rules: AxisRules = LOGICAL_AXIS_RULES) -> Any:
    """NamedShardings of the parameter tree."""
    return jax.tree_util.tree_map(lambda s: NamedSharding(mesh, s),
                                  param_specs(config, mesh, rules),
                                  is_leaf=lambda x: isinstance(x, P))


def _dict_path(path: tuple) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(abstract_state: Any, config: T5Config, mesh: Mesh,
                    rules: AxisRules = LOGICAL_AXIS_RULES) -> Any:
    """NamedShardings for any tree whose leaves sit under parameter paths (params,
    optimizer moments, Adafactor's factored row/column statistics); other leaves
    (step counters, scalars) are replicated.

    A leaf of the parameter's shape takes the parameter's spec; a factored statistic
    (the parameter's shape with one dimension removed) takes the spec without that
    dimension.
    """
    flat_specs = {_dict_path(p): s for p, s in jax.tree_util.tree_flatten_with_path(
        param_specs(config, mesh, rules), is_leaf=lambda x: isinstance(x, P))[0]}
    flat_shapes = {_dict_path(p): a.shape for p, a in
                   jax.tree_util.tree_flatten_with_path(abstract_params(config))[0]}

    def one(path: tuple, leaf: Any) -> NamedSharding:
        keys = _dict_path(path)
        for start in range(len(keys)):
            sub = keys[start:]
            if sub in flat_specs:
                spec, shape = tuple(flat_specs[sub]), flat_shapes[sub]
                spec = spec + (None,) * (len(shape) - len(spec))
                if tuple(leaf.shape) == tuple(shape):
                    return NamedSharding(mesh, P(*spec))
                for drop in range(len(shape)):
                    if tuple(leaf.shape) == tuple(shape[:drop] + shape[drop + 1:]):
                        kept = spec[:drop] + spec[drop + 1:]
                        return NamedSharding(mesh, _fit(P(*kept), leaf.shape, mesh))
                break
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(one, abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batch arrays: split along the batch dimension over `data`."""
    return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's numpy batch (its rows of the global batch) → global sharded arrays."""
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return {k: jax.device_put(np.asarray(v), sharding) for k, v in batch.items()}
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()}


def host_shard_info() -> seqio.ShardInfo:
    """This host's share of the input pipeline (one shard per process)."""
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())


def per_host_batch_size(global_batch_size: int) -> int:
    hosts = jax.process_count()
    if global_batch_size % hosts:
        raise ValueError(f"BATCH_SIZE={global_batch_size} is not divisible by the "
                         f"{hosts} hosts")
    return global_batch_size // hosts


@gin.configurable(module="flan_jax.training.partitioning")
def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           auto: bool = False) -> None:
    """`jax.distributed.initialize` when a coordinator is given (or `auto` on Cloud TPU,
    where JAX discovers the slice itself); a no-op otherwise (single host)."""
    if coordinator_address is None and not auto:
        return
    kwargs = {}
    if coordinator_address is not None:
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id)
    jax.distributed.initialize(**kwargs)
    logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
                 jax.process_index(), jax.process_count(), jax.local_device_count(),
                 jax.device_count())
