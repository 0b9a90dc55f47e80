"""t5x checkpoint directories <-> flan_jax parameters, in both of t5x's layouts.

orbax (what t5x writes today, through `OrbaxCheckpointManagerInterface`):

    MODEL_DIR/checkpoint_<step>/_CHECKPOINT_METADATA
    MODEL_DIR/checkpoint_<step>/state/     an orbax PyTree checkpoint (OCDBT) of
        {'target': <params>, 'state': {'step', 'param_states': <Adafactor statistics>}}
    MODEL_DIR/checkpoint_<step>/dataset/   the data iterator (when t5x saves it)

msgpack (the legacy layout of the published T5 checkpoints, format version 3, t5x
mid-2021 to 2023):

    MODEL_DIR/checkpoint_<step>/checkpoint      msgpack (flax.serialization) of
        {'version': 3, 'optimizer': {'target': <params>, 'state': {'step', 'param_states'}}}
    MODEL_DIR/checkpoint_<step>/target.encoder.layers_0.attention.query.kernel/
        one gzip-compressed zarr array per parameter, written with TensorStore

Inside the msgpack an array stored with TensorStore is replaced by its TensorStore
spec, e.g. {'driver': 'zarr', 'dtype': 'bfloat16', 'kvstore': {'driver': 'file',
'path': 'target.encoder...kernel/'}, 'metadata': {'compressor': {'id': 'gzip'},
'shape': [...], 'chunks': [...]}}, the path relative to the checkpoint directory so
that a checkpoint can be moved; small arrays may be stored inline as numpy arrays.
Version 2 stored bfloat16 arrays as uint16. Optimizer state is ignored on reading.

Writing produces parameters only, in the layout asked for: the state holds the step and
no `param_states`. t5x restores such a checkpoint when told to build the optimizer
state from scratch (see `save_t5x`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import ml_dtypes
import numpy as np
import tensorstore as ts
from flax import serialization

from flan_jax.interop.common import (
    CheckpointError,
    Params,
    check_params,
    config_from_hf,
    flatten,
    param_problems,
    progress,
    read_config,
    read_orbax,
    resolve_config,
    unflatten,
    write_config,
)
from flan_jax.models import layout
from flan_jax.models.config import T5Config

VERSION = 3
MSGPACK_FILE = "checkpoint"
ORBAX_ITEM = "state"  # checkpoint_<step>/state: target + optimizer state
T5xLayout = Literal["msgpack", "orbax"]
T5X_LAYOUTS: tuple[T5xLayout, ...] = ("msgpack", "orbax")
_STEP_DIR = re.compile(r"checkpoint_(\d+)")
_LAYER = re.compile(r"(encoder|decoder)/layers_(\d+)/")
_MAX_CHUNK_BYTES = 64 * 2**20  # t5x's target chunk size
RESTORE_HINT = (
    "The t5x checkpoint has no optimizer state. To restore it in t5x, set "
    "RestoreCheckpointConfig.assignment_map = ((r'state/param_states.*', None),) and "
    "RestoreCheckpointConfig.fallback_to_scratch = True (gin), which builds the optimizer "
    "state from scratch and takes the parameters and step from the checkpoint."
)


def checkpoint_layout(directory: Path) -> T5xLayout | None:
    """Which t5x layout a checkpoint directory holds, if any."""
    if (directory / MSGPACK_FILE).is_file():
        return "msgpack"
    if (directory / ORBAX_ITEM / "_METADATA").is_file():
        return "orbax"
    return None


def find_checkpoint(path: Path) -> Path | None:
    """The t5x checkpoint directory at `path`: `path` itself if it holds a checkpoint (or
    is its msgpack file or orbax `state` directory), else its latest `checkpoint_<step>`
    subdirectory (unfinished saves, named otherwise, are ignored)."""
    if path.is_file():
        return path.parent if path.name == MSGPACK_FILE else None
    if path.name == ORBAX_ITEM and checkpoint_layout(path.parent) == "orbax":
        return path.parent
    if checkpoint_layout(path):
        return path
    steps = [
        (int(m.group(1)), child)
        for child in (path.iterdir() if path.is_dir() else ())
        if (m := _STEP_DIR.fullmatch(child.name)) and checkpoint_layout(child)
    ]
    return max(steps)[1] if steps else None


def checkpoint_step(directory: Path) -> int | None:
    """The step a `checkpoint_<step>` directory is named after (None if named otherwise)."""
    m = _STEP_DIR.fullmatch(directory.name)
    return int(m.group(1)) if m else None


def _is_spec(value: Any) -> bool:
    """Whether a msgpack value is a TensorStore spec (t5x's test for one)."""
    return isinstance(value, dict) and {"driver", "kvstore", "metadata"} <= value.keys()


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) pairs of a msgpack tree whose leaves are arrays or TensorStore specs."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not _is_spec(value):
            yield from _leaves(value, path + "/")
        else:
            yield path, value


def _read_target(file: Path) -> dict[str, Any]:
    """Parses the msgpack file; returns the flat `optimizer/target` tree."""
    try:
        raw = file.read_bytes()
    except OSError as e:
        raise CheckpointError(file, f"cannot read: {e}") from None
    if raw.startswith(b"model_checkpoint_path"):
        raise CheckpointError(
            file,
            "is the index of a TensorFlow (Mesh TensorFlow) checkpoint, not a t5x checkpoint",
            "Convert it to a t5x checkpoint with t5x first.",
        )
    try:
        contents = serialization.msgpack_restore(raw)
    except (ValueError, TypeError) as e:
        raise CheckpointError(
            file,
            f"not a valid t5x msgpack file ({e})",
            "The file is corrupt or truncated: copy the checkpoint directory again.",
        ) from None
    version = contents.get("version", 0) if isinstance(contents, dict) else None
    if not isinstance(version, int) or version < 2:
        raise CheckpointError(
            file, f"unsupported t5x checkpoint version {version!r}; versions 2 and 3 are read"
        )
    target = (
        contents.get("optimizer", {}).get("target")
        if isinstance(contents.get("optimizer"), dict)
        else None
    )
    if not isinstance(target, dict):
        raise CheckpointError(file, "has no 'optimizer' -> 'target' parameter tree")
    return dict(_leaves(target))


def _read_array(directory: Path, leaf: Any) -> np.ndarray:
    """Reads one leaf: an inline numpy array, or a zarr array named by its spec."""
    if isinstance(leaf, np.ndarray):
        return leaf
    if not _is_spec(leaf):
        raise ValueError(f"is neither an array nor a TensorStore spec: {type(leaf).__name__}")
    kvstore = leaf["kvstore"] if isinstance(leaf["kvstore"], dict) else {}
    relative = kvstore.get("path", leaf.get("path"))
    if not isinstance(relative, str) or not relative.strip("/"):
        raise ValueError("its TensorStore spec names no path")
    location = directory / relative.strip("/")
    if not location.is_dir():
        raise ValueError(f"its array directory {location.name} is missing from {directory}")
    store = ts.open(
        {"driver": "zarr", "kvstore": {"driver": "file", "path": str(location)}}, open=True
    ).result()
    array = store.read().result()
    metadata = leaf["metadata"] if isinstance(leaf["metadata"], dict) else {}
    declared = tuple(metadata.get("shape", array.shape))
    if declared != array.shape:
        raise ValueError(
            f"the msgpack file declares shape {declared} but {location.name} holds {array.shape}"
        )
    if array.dtype == np.uint16:  # version 2 wrote bfloat16 as its raw bits
        array = array.view(ml_dtypes.bfloat16)
    return array


def _infer_config(
    flat: Mapping[str, np.ndarray], where: Path, problems: list[str]
) -> T5Config | None:
    """Reads the architecture off the parameter shapes (t5x keeps no model config in
    the checkpoint); relative_attention_max_distance and layer_norm_epsilon take the
    T5 v1.1 / Flan-T5 defaults. Adds to `problems` and returns None if it cannot."""
    needed = (
        "token_embedder/embedding",
        "encoder/relpos_bias/rel_embedding",
        "encoder/layers_0/attention/query/kernel",
        "encoder/layers_0/mlp/wi_0/kernel",
    )
    unusable = [p for p in needed if p not in flat or flat[p].ndim != 2]
    if unusable:
        problems += [
            f"cannot infer the model config: parameter {p} is missing or not 2-D "
            "(pass the config explicitly)"
            for p in unusable
        ]
        return None
    vocab_size, d_model = flat[needed[0]].shape
    num_heads, num_buckets = flat[needed[1]].shape
    layers = {"encoder": 0, "decoder": 0}
    for path in flat:
        if m := _LAYER.match(path):
            layers[m.group(1)] = max(layers[m.group(1)], int(m.group(2)) + 1)
    return config_from_hf(
        {
            "vocab_size": vocab_size,
            "d_model": d_model,
            "d_ff": flat[needed[3]].shape[1],
            "num_layers": layers["encoder"],
            "num_decoder_layers": layers["decoder"],
            "num_heads": num_heads,
            "d_kv": flat[needed[2]].shape[1] // max(num_heads, 1),
            "relative_attention_num_buckets": num_buckets,
            "feed_forward_proj": "gated-gelu",
            "tie_word_embeddings": False,
        },
        where,
    )


def load_t5x(
    path: str | Path, config: T5Config | None = None, *, show_progress: bool = False
) -> tuple[Params, T5Config]:
    """Reads the parameters of a t5x checkpoint (either layout) into (params, config).

    `path` is a checkpoint directory, its msgpack `checkpoint` file or orbax `state`
    directory, or a model directory (the latest `checkpoint_<step>` is taken). The
    config comes from a config.json in the checkpoint directory if there is one (flan_jax
    writes it), else from `config`, else it is inferred from the parameter shapes.
    """
    path = Path(path)
    directory = find_checkpoint(path)
    if directory is None:
        raise CheckpointError(
            path,
            "no t5x checkpoint here",
            f"Expected a t5x checkpoint_<step> directory (an orbax '{ORBAX_ITEM}/' "
            f"directory, or a msgpack file named '{MSGPACK_FILE}'), or a model directory "
            "holding checkpoint_<step> subdirectories.",
        )
    problems: list[str] = []
    if checkpoint_layout(directory) == "orbax":
        flat = flatten(read_orbax(directory / ORBAX_ITEM, item="target"))
    else:
        leaves = _read_target(directory / MSGPACK_FILE)
        flat = {}
        for name, leaf in progress(sorted(leaves.items()), "reading t5x arrays", show_progress):
            try:
                flat[name] = _read_array(directory, leaf)
            except ValueError as e:  # TensorStore raises ValueError for unreadable arrays too
                problems.append(f"cannot read parameter {name}: {e}")
    if (directory / "config.json").is_file():
        loaded = resolve_config(read_config(directory / "config.json"), config, problems)
    else:
        loaded = config or _infer_config(flat, directory, problems)
    if loaded is not None:
        problems += param_problems(flat, loaded, lambda name: "target." + name.replace("/", "."))
    if problems:
        raise CheckpointError(directory, problems)
    return unflatten(flat), loaded


def _chunk_shape(shape: tuple[int, ...], itemsize: int) -> list[int]:
    """Chunks of at most 64 MiB: halve the largest chunk dimension until it fits."""
    chunk = list(shape)
    while chunk and math.prod(chunk) * itemsize > _MAX_CHUNK_BYTES:
        largest = chunk.index(max(chunk))
        chunk[largest] = -(-chunk[largest] // 2)
    return chunk


def destination(path: str | Path, step: int = 0) -> Path:
    """The checkpoint directory `save_t5x` writes: `path` if it is named
    checkpoint_<N>, else `path`/checkpoint_<step>; CheckpointError if it exists."""
    path = Path(path)
    directory = path if _STEP_DIR.fullmatch(path.name) else path / f"checkpoint_{step}"
    if directory.exists():
        raise CheckpointError(
            directory, "already exists", "Choose a new directory or another step."
        )
    return directory


def save_t5x(
    path: str | Path,
    params: Params,
    config: T5Config,
    *,
    step: int = 0,
    t5x_layout: T5xLayout = "msgpack",
    show_progress: bool = False,
) -> Path:
    """Writes `params` as a t5x checkpoint directory in `t5x_layout` and returns it.

    `path` is the checkpoint directory if named checkpoint_<N>, else a t5x model
    directory in which checkpoint_<step> is created (see `destination`). The directory
    is written under a temporary name and renamed when complete, as t5x does.
    The checkpoint holds no optimizer state; `RESTORE_HINT` says what t5x needs.
    """
    if t5x_layout not in T5X_LAYOUTS:
        raise ValueError(f"unknown t5x layout {t5x_layout!r}; expected one of {T5X_LAYOUTS}")
    directory = destination(path, step)
    params = layout.to_per_layer(params)
    check_params(params, config)
    if t5x_layout == "orbax":
        return _save_orbax(directory, params, config, step)
    staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    staging.mkdir(parents=True)
    specs = {}
    for name, value in progress(
        sorted(flatten(params).items()), "writing t5x arrays", show_progress
    ):
        array = np.asarray(value)
        relative = "target." + name.replace("/", ".")
        spec = {
            "driver": "zarr",
            "dtype": array.dtype.name,
            "kvstore": {"driver": "file", "path": relative},
            "metadata": {
                "compressor": {"id": "gzip"},
                "shape": list(array.shape),
                "chunks": _chunk_shape(array.shape, array.dtype.itemsize),
            },
        }
        local = {**spec, "kvstore": {"driver": "file", "path": str(staging / relative)}}
        ts.open(local, create=True).result().write(array).result()
        specs[name] = ts.Spec(spec).to_json()
    contents = {
        "version": VERSION,
        "optimizer": {"target": unflatten(specs), "state": {"step": np.asarray(step, np.int32)}},
    }
    (staging / MSGPACK_FILE).write_bytes(serialization.msgpack_serialize(contents))
    write_config(staging / "config.json", config)
    staging.rename(directory)
    return directory


def _save_orbax(directory: Path, params: Params, config: T5Config, step: int) -> Path:
    """checkpoint_<N>/state (orbax PyTree: target + state.step) and _CHECKPOINT_METADATA,
    written by an orbax CheckpointManager as t5x's is, in a staging model directory."""
    import orbax.checkpoint as ocp

    number = int(_STEP_DIR.fullmatch(directory.name).group(1))
    staging = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    tree = {"target": unflatten({k: np.asarray(v) for k, v in flatten(params).items()}),
            "state": {"step": np.asarray(step, np.int32)}}
    options = ocp.CheckpointManagerOptions(step_prefix="checkpoint", create=True)
    with ocp.CheckpointManager(staging.absolute(), options=options) as manager:
        manager.save(number, args=ocp.args.Composite(**{ORBAX_ITEM: ocp.args.PyTreeSave(tree)}))
        manager.wait_until_finished()
    written = staging / f"checkpoint_{number}"
    write_config(written / "config.json", config)
    written.rename(directory)
    staging.rmdir()
    return directory
