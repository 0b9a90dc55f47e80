"""Hugging Face `google/flan-t5-*` checkpoint directories <-> flan_jax parameters.

A directory holds config.json and the weights as model.safetensors, as safetensors
shards listed in model.safetensors.index.json, or as pytorch_model.bin (also sharded
with an index). PyTorch linear weights are [out, in] and flan_jax kernels [in, out],
so every 2-D weight except the token embedding is transposed. Pickled .bin files are
only opened with `torch.load(weights_only=True)`, which refuses arbitrary objects.
An export is a whole new directory: weights, config.json and the tokenizer files of the
model's vocabulary (`flan_jax.interop.hf_tokenizer`).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import ml_dtypes
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from flan_jax.interop.common import (
    CheckpointError,
    Params,
    check_params,
    config_from_hf,
    flatten,
    new_file_mode,
    param_problems,
    progress,
    read_json,
    resolve_config,
    unflatten,
    write_config,
)
from flan_jax.interop.hf_tokenizer import TokenizerFiles
from flan_jax.models import layout
from flan_jax.models.config import T5Config

SAFETENSORS = "model.safetensors"
WEIGHT_FILES = (
    SAFETENSORS,
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_MLP = {"wi_0": "wi_0", "wi_1": "wi_1", "wo": "wo"}
# (HF module, flan_jax layer norm, flan_jax module) for layer.0, layer.1, ... of a block.
_ENCODER_SUBLAYERS = (
    ("SelfAttention", "pre_attention_layer_norm", "attention"),
    ("DenseReluDense", "pre_mlp_layer_norm", "mlp"),
)
_DECODER_SUBLAYERS = (
    ("SelfAttention", "pre_self_attention_layer_norm", "self_attention"),
    ("EncDecAttention", "pre_cross_attention_layer_norm", "encoder_decoder_attention"),
    ("DenseReluDense", "pre_mlp_layer_norm", "mlp"),
)
_SHARED = "shared.weight"
_LM_HEAD = "lm_head.weight"
_EMBEDDING_COPIES = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
# Old T5 checkpoints carry a relative bias for the first cross-attention that no T5
# uses (transformers ignores it on loading too); it is accepted and left out.
_UNUSED = ("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",)


class _Tensor(NamedTuple):
    """A tensor in a weight file: its shape, and a function reading it as numpy."""

    shape: tuple[int, ...]
    load: Callable[[], np.ndarray]


def name_map(config: T5Config) -> dict[str, tuple[str, bool]]:
    """HF tensor name -> (flan_jax parameter path, transpose?) for the whole model."""
    names = {
        _SHARED: ("token_embedder/embedding", False),
        _LM_HEAD: ("decoder/logits_dense/kernel", True),
    }
    stacks = (
        ("encoder", config.num_layers, _ENCODER_SUBLAYERS),
        ("decoder", config.num_decoder_layers, _DECODER_SUBLAYERS),
    )
    for stack, num_layers, sublayers in stacks:
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        names[bias] = (f"{stack}/relpos_bias/rel_embedding", True)
        names[f"{stack}.final_layer_norm.weight"] = (f"{stack}/{stack}_norm/scale", False)
        for i in range(num_layers):
            for j, (module, norm, target) in enumerate(sublayers):
                hf, ours = f"{stack}.block.{i}.layer.{j}", f"{stack}/layers_{i}"
                names[f"{hf}.layer_norm.weight"] = (f"{ours}/{norm}/scale", False)
                for theirs, mine in (_MLP if module == "DenseReluDense" else _ATTENTION).items():
                    names[f"{hf}.{module}.{theirs}.weight"] = (
                        f"{ours}/{target}/{mine}/kernel",
                        True,
                    )
    return names


def is_hf_dir(path: Path) -> bool:
    """Whether `path` holds Hugging Face weight files (config.json is checked on loading,
    so that a missing one is reported as such)."""
    return any((path / f).is_file() for f in WEIGHT_FILES)


def _weight_files(directory: Path) -> list[Path]:
    """The weight files of a HF directory, following an index to its shards."""
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return [path]
        weight_map = read_json(path, "weight index").get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(
                path, "the index has no 'weight_map' object", "Re-download the index file."
            )
        shards = sorted(set(weight_map.values()))
        missing = [
            f"shard {s} listed in the index is missing"
            for s in shards
            if not (directory / s).is_file()
        ]
        if missing:
            raise CheckpointError(path, missing, "Download every shard listed in the index.")
        return [directory / s for s in shards]
    raise CheckpointError(directory, f"no weights found; expected one of {', '.join(WEIGHT_FILES)}")


def _safetensors_tensors(path: Path) -> dict[str, _Tensor]:
    """The tensors of one safetensors file, read lazily (the file is memory-mapped)."""
    try:
        handle = safe_open(str(path), framework="np")
        return {
            k: _Tensor(tuple(handle.get_slice(k).get_shape()), _guarded(path, handle.get_tensor, k))
            for k in handle.keys()
        }
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            path, f"not a readable safetensors file ({e})", "Re-download or re-export the file."
        ) from None


def _guarded(path: Path, read: Callable[[str], np.ndarray], key: str) -> Callable[[], np.ndarray]:
    """Defers reading `key`; a truncated file raises CheckpointError naming it."""

    def load() -> np.ndarray:
        try:
            return read(key)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(
                path, f"cannot read tensor {key} ({e})", "Re-download the file."
            ) from None

    return load


def _torch_tensors(path: Path) -> dict[str, _Tensor]:
    """The tensors of a pytorch_model.bin, loaded with torch.load(weights_only=True)."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            path,
            "reading pytorch_model.bin needs PyTorch, which is not installed",
            "Install torch, or use a directory with model.safetensors.",
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            path,
            f"torch.load(weights_only=True) failed: {first_line}",
            "The file is corrupt or holds pickled objects other than tensors; flan_jax never "
            "unpickles arbitrary objects. Use the model.safetensors release of the checkpoint.",
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(path, "does not hold a flat dict of tensors (a state_dict)")

    def to_numpy(tensor: Any) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            t = tensor.detach().contiguous()
            if t.dtype == torch.bfloat16:
                return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
            return t.numpy()

        return load

    return {k: _Tensor(tuple(v.shape), to_numpy(v)) for k, v in state.items()}


def _read_tensors(files: list[Path]) -> dict[str, _Tensor]:
    """Name -> lazily read tensor over all weight files; a name in two shards is an error."""
    tensors: dict[str, _Tensor] = {}
    duplicates = []
    for path in files:
        found = (
            _safetensors_tensors(path) if path.suffix == ".safetensors" else _torch_tensors(path)
        )
        duplicates += [
            f"tensor {k} appears in more than one shard (again in {path.name})"
            for k in found
            if k in tensors
        ]
        tensors.update(found)
    if duplicates:
        raise CheckpointError(files[0].parent, duplicates)
    return tensors


def load_hf(
    path: str | Path, config: T5Config | None = None, *, show_progress: bool = False
) -> tuple[Params, T5Config]:
    """Reads a Hugging Face T5 v1.1 / Flan-T5 directory into (params, config).

    With `config`, the checkpoint's config.json must agree with it on the
    architecture, and `config` is returned. Any problem raises one CheckpointError
    that lists them all.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(
            directory, "not a directory", "Pass the directory holding config.json."
        )
    config_path = directory / "config.json"
    data = read_json(config_path, "model config")
    loaded = config_from_hf(data, config_path)

    tensors = _read_tensors(_weight_files(directory))
    names = name_map(loaded)
    sources = {target: name for name, (target, _) in names.items()}
    flat: dict[str, np.ndarray] = {}
    problems = []
    for name in progress(sorted(tensors), "reading Hugging Face weights", show_progress):
        if name in names:
            target, transpose = names[name]
            array = tensors[name].load()
            flat[target] = np.ascontiguousarray(array.T) if transpose else array
        elif name not in _EMBEDDING_COPIES + _UNUSED:
            problems.append(
                f"unexpected tensor {name} with shape {tensors[name].shape}: the model has no such parameter"
            )
    shared = flat.get(names[_SHARED][0])
    for name in _EMBEDDING_COPIES:
        if (
            name in tensors
            and shared is not None
            and not np.array_equal(tensors[name].load(), shared)
        ):
            problems.append(f"{name} differs from {_SHARED}; flan_jax has a single token embedding")
    if _LM_HEAD not in tensors and shared is not None and data.get("tie_word_embeddings", True):
        # Transformers ties a missing lm_head to the shared embedding; so do we.
        flat[names[_LM_HEAD][0]] = np.ascontiguousarray(shared.T)
        sources[names[_LM_HEAD][0]] = f"{_SHARED} (tied, no {_LM_HEAD} in the file)"
    problems += param_problems(flat, loaded, sources.get)
    config = resolve_config(loaded, config, problems)
    if problems:
        raise CheckpointError(directory, problems)
    return unflatten(flat), config


def destination(path: str | Path) -> Path:
    """The directory `save_hf` writes; CheckpointError unless it is new or empty (an export
    is a whole model directory: weights, config and tokenizer files that belong together)."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(directory, "exists and is not a directory",
                              "Choose a new directory for the export.")
    held = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    if held:
        shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
        raise CheckpointError(
            directory, f"is not empty (it holds {shown}); a Hugging Face export writes a whole "
            "model directory and does not mix its files with others",
            "Choose a new or empty directory.")
    return directory


def save_hf(
    path: str | Path,
    params: Params,
    config: T5Config,
    *,
    tokenizer: TokenizerFiles | None = None,
    show_progress: bool = False,
) -> Path:
    """Writes config.json + model.safetensors that `T5ForConditionalGeneration.from_pretrained`
    loads, and the `tokenizer` files if given; returns the directory. Refuses a directory
    that is not empty. Files get the permissions of any new file (0644 under umask 022)."""
    directory = destination(path)
    params = layout.to_per_layer(params)
    check_params(params, config)
    flat = flatten(params)
    tensors = {}
    for name, (source, transpose) in progress(
        name_map(config).items(), "writing Hugging Face weights", show_progress
    ):
        array = np.asarray(flat[source])
        tensors[name] = np.ascontiguousarray(array.T if transpose else array)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / SAFETENSORS), metadata={"format": "pt"})
    # safetensors stages the file through a private (0600) temporary file.
    (directory / SAFETENSORS).chmod(new_file_mode())
    write_config(directory / "config.json", config)
    for name, content in (tokenizer.files.items() if tokenizer else ()):
        (directory / name).write_bytes(content)
    return directory
