"""Pieces shared by every checkpoint format: the error type, flat parameter paths,
and the checks that compare a parameter tree (and a config) with the model.

A parameter tree here is the t5x tree without a 'target' level, as nested dicts of
numpy arrays, per layer (`flan_jax.models.layout`); its flat form maps
'encoder/layers_0/attention/query/kernel' to an array.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jax
import ml_dtypes
import numpy as np
from flax import traverse_util
from tqdm import tqdm

from flan_jax.errors import FlanJaxError
from flan_jax.models import layout
from flan_jax.models.config import T5Config
from flan_jax.models.t5 import abstract_params

Params = dict[str, Any]
FlatParams = dict[str, np.ndarray]
T = TypeVar("T")

# Config fields that change the parameter tree or the function the weights compute;
# two configs that differ in one of these cannot share a checkpoint.
ARCHITECTURE_FIELDS = (
    "vocab_size",
    "d_model",
    "d_ff",
    "num_layers",
    "num_decoder_layers",
    "num_heads",
    "d_kv",
    "relative_attention_num_buckets",
    "relative_attention_max_distance",
    "layer_norm_epsilon",
)
FLOAT_DTYPES = {
    "float32": np.dtype(np.float32),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
}


class CheckpointError(FlanJaxError):
    """A checkpoint cannot be found, read or written, or does not fit the model.

    The message names the file or directory and lists every problem found, one per
    line, so a user fixes them all in one go instead of one traceback at a time.
    """

    def __init__(self, where: str | Path, problems: str | Sequence[str], hint: str = ""):
        self.where = str(where)
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            lines = [f"{self.where}: {self.problems[0]}"]
        else:
            lines = [f"{self.where}: {len(self.problems)} problems:"]
            lines += [f"  - {p}" for p in self.problems]
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def flatten(params: Mapping[str, Any]) -> FlatParams:
    """Nested parameter dicts -> {'a/b/c': array}."""
    return traverse_util.flatten_dict(dict(params), sep="/")


def unflatten(flat: Mapping[str, np.ndarray]) -> Params:
    """{'a/b/c': array} -> nested parameter dicts."""
    return traverse_util.unflatten_dict(dict(flat), sep="/")


def read_orbax(path: Path, item: str | None = None) -> Params:
    """The arrays of an orbax PyTree checkpoint directory as numpy, restored onto the host
    CPU whatever mesh they were saved from: the whole tree, or only its `item` key (t5x
    keeps the parameters under 'target' beside the optimizer state, left unread)."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    handler = ocp.PyTreeCheckpointHandler()
    try:
        stored = handler.metadata(path)
        if item is not None:
            if item not in stored:
                raise CheckpointError(path, f"holds no {item!r} tree "
                                            f"(it has: {', '.join(sorted(stored))})")
            stored = {item: stored[item]}
        target = jax.tree_util.tree_map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=host), stored)
        restore_args = jax.tree_util.tree_map(lambda _: ocp.ArrayRestoreArgs(sharding=host),
                                              target)
        restored = handler.restore(path, args=ocp.args.PyTreeRestore(
            item=target, restore_args=restore_args, partial_restore=item is not None))
    except CheckpointError:
        raise
    except Exception as e:
        # Orbax and TensorStore raise many exception types for one cause: a damaged directory.
        raise CheckpointError(
            path, f"cannot restore the orbax checkpoint ({type(e).__name__}: {e})",
            "The checkpoint is incomplete or damaged; use another step or re-create it.",
        ) from None
    finally:
        handler.close()
    restored = restored[item] if item is not None else restored
    return jax.tree_util.tree_map(np.asarray, restored)


def progress(items: Iterable[T], desc: str, enabled: bool) -> Iterator[T]:
    """A per-parameter tqdm bar on stderr when `enabled`, the bare iterable otherwise."""
    return iter(tqdm(items, desc=desc, unit="param", disable=not enabled))


def parse_dtype(name: str) -> np.dtype:
    """'float32' | 'bfloat16' | 'float16' -> numpy dtype; a clear error otherwise."""
    if name not in FLOAT_DTYPES:
        raise FlanJaxError(f"unsupported dtype {name!r}; choose one of {sorted(FLOAT_DTYPES)}")
    return FLOAT_DTYPES[name]


def cast(params: Mapping[str, Any], dtype: str | np.dtype | None) -> Params:
    """Casts every array to `dtype` (a name or numpy dtype); None keeps the stored dtypes."""
    if dtype is None:
        return dict(params)
    target = parse_dtype(dtype) if isinstance(dtype, str) else np.dtype(dtype)
    return jax.tree_util.tree_map(lambda x: np.asarray(x).astype(target, copy=False), dict(params))


@functools.cache
def _model_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    per_layer = abstract_params(config.replace(scan_layers=False))
    return {k: tuple(v.shape) for k, v in flatten(per_layer).items()}


def expected_shapes(config: T5Config) -> dict[str, tuple[int, ...]]:
    """Flat path -> shape of every parameter the model built from `config` has, in the
    per-layer layout that checkpoints store (`flan_jax.models.layout`)."""
    return dict(_model_shapes(config))


def param_problems(
    flat: Mapping[str, Any],
    config: T5Config,
    source: Callable[[str], str | None] = lambda path: None,
) -> list[str]:
    """Every way `flat` differs from the model's parameters: missing, unexpected,
    wrong shape, non-float dtype. `source(path)` names the parameter as the file
    does (an HF tensor, a t5x array), so that the message points into the file too."""

    def name(path: str) -> str:
        theirs = source(path)
        return f"{path} ({theirs})" if theirs else path

    expected = expected_shapes(config)
    problems = []
    for path, shape in expected.items():
        if path not in flat:
            problems.append(f"missing parameter {name(path)}: the model expects shape {shape}")
            continue
        array = flat[path]
        if tuple(array.shape) != shape:
            problems.append(
                f"wrong shape for {name(path)}: checkpoint has {tuple(array.shape)}, "
                f"the model expects {shape}"
            )
        if np.dtype(array.dtype) not in FLOAT_DTYPES.values():
            problems.append(
                f"wrong dtype for {name(path)}: {array.dtype}; expected one of {sorted(FLOAT_DTYPES)}"
            )
    for path in sorted(set(flat) - set(expected)):
        problems.append(
            f"unexpected parameter {name(path)} with shape {tuple(flat[path].shape)}: "
            "the model has no such parameter"
        )
    return problems


def check_params(params: Mapping[str, Any], config: T5Config, where: str = "parameters") -> None:
    """Raises CheckpointError listing every difference between `params` (either layout)
    and the parameters of the model built from `config`; returns None when they agree."""
    problems = param_problems(flatten(layout.to_per_layer(params)), config)
    if problems:
        raise CheckpointError(where, problems)


def config_problems(expected: T5Config, found: T5Config) -> list[str]:
    """Architecture fields on which two configs disagree, one line per field."""
    return [
        f"config disagreement on {field}: expected {getattr(expected, field)!r}, "
        f"checkpoint has {getattr(found, field)!r}"
        for field in ARCHITECTURE_FIELDS
        if getattr(expected, field) != getattr(found, field)
    ]


def new_file_mode() -> int:
    """The permissions `open()` gives a new file: 0666 less the process umask."""
    umask = os.umask(0)  # the umask can only be read by setting it
    os.umask(umask)
    return 0o666 & ~umask


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Reads a JSON object; a missing or malformed file raises CheckpointError naming it."""
    if not path.is_file():
        raise CheckpointError(
            path, f"missing {what}", f"Every checkpoint directory needs {path.name}."
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            path, f"cannot parse {what}: {e}", "Restore the file from its source."
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(path, f"{what} must be a JSON object, found {type(data).__name__}")
    return data


def config_from_hf(data: Mapping[str, Any], where: str | Path) -> T5Config:
    """A Hugging Face style config dict -> T5Config; CheckpointError naming `where` if
    it describes a model flan_jax does not implement or lacks required fields."""
    normalized = dict(data)
    if "scale_decoder_outputs" in data:
        # Transformers 5 always writes tie_word_embeddings: true and says with this key
        # whether decoder outputs are rescaled as for T5 v1.0's tied embedding.
        normalized["tie_word_embeddings"] = bool(data["scale_decoder_outputs"])
    try:
        return T5Config.from_hf_dict(normalized)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(where, f"not a usable T5 config: {e}") from None


def read_config(path: Path) -> T5Config:
    """Reads a Hugging Face style config.json into a T5Config, errors naming the file."""
    return config_from_hf(read_json(path, "model config"), path)


def write_config(path: Path, config: T5Config) -> None:
    """Writes `config` as a Hugging Face style config.json, the one config file format
    of all three checkpoint layouts."""
    path.write_text(json.dumps(config.to_hf_dict(), indent=2, sort_keys=True) + "\n")


def resolve_config(loaded: T5Config, requested: T5Config | None, problems: list[str]) -> T5Config:
    """The config to return for a checkpoint: the caller's if given (after adding any
    architecture disagreement with the checkpoint's own config to `problems`)."""
    if requested is None:
        return loaded
    problems.extend(config_problems(requested, loaded))
    return requested
