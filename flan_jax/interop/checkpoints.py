"""Checkpoints: flan_jax's own parameter format, and one entry point for every format.

Three layouts are read and written, each with the model config beside the weights:

    flan_jax   DIR/params/ (an orbax checkpoint of the parameter tree) + DIR/config.json;
               DIR may also be an orbax CheckpointManager directory whose numbered step
               directories each hold params/ (the latest is taken, config.json at the
               top or in the step directory)
    hf         DIR/config.json + model.safetensors (or shards, or pytorch_model.bin),
               as `google/flan-t5-*` on the Hugging Face Hub; written with the tokenizer
               files of the model's vocabulary (`flan_jax.interop.hf_tokenizer`)
    t5x        MODEL_DIR/checkpoint_<step>/state/ (orbax, what t5x writes today) or
               MODEL_DIR/checkpoint_<step>/checkpoint (legacy msgpack) + zarr arrays

`load_any` recognises the layout and returns (params, T5Config); `save_any` writes one.
The parameter tree is the t5x tree without 'target', as nested dicts of numpy arrays.
Files hold the per-layer tree (`layers_{i}`), as t5x and Hugging Face do; `load_any`
returns the layout of the config it is given (scanned for `scan_layers`), and the save
functions take either (`flan_jax.models.layout`).
Every mismatch with the model is reported at once, by parameter path (CheckpointError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import orbax.checkpoint as ocp

from flan_jax.interop import hf, t5x
from flan_jax.interop.common import (
    CheckpointError,
    Params,
    cast,
    check_params,
    flatten,
    param_problems,
    read_config,
    read_orbax,
    resolve_config,
    unflatten,
    write_config,
)
from flan_jax.interop.hf import load_hf, save_hf
from flan_jax.interop.hf_tokenizer import TokenizerFiles
from flan_jax.interop.t5x import RESTORE_HINT, load_t5x, save_t5x
from flan_jax.models import layout
from flan_jax.models.config import T5Config

__all__ = [
    "FORMATS",
    "RESTORE_HINT",
    "CheckpointError",
    "Format",
    "check_destination",
    "check_params",
    "detect_format",
    "load_any",
    "load_hf",
    "load_params",
    "load_t5x",
    "locate",
    "save_any",
    "save_hf",
    "save_params",
    "save_t5x",
]

Format = Literal["hf", "t5x", "flan_jax"]
FORMATS: tuple[Format, ...] = ("hf", "t5x", "flan_jax")
PARAMS_DIR = "params"
CONFIG_FILE = "config.json"


def training_steps(path: Path) -> list[int]:
    """The numbered step directories holding params/ at `path` (a flan_jax.train MODEL_DIR)."""
    return sorted(
        int(child.name)
        for child in (path.iterdir() if path.is_dir() else ())
        if child.name.isdigit() and (child / PARAMS_DIR).is_dir()
    )


def _other_weights(path: Path) -> list[str]:
    """Weights at `path` that are not a training step: converted or copied checkpoints."""
    found = [PARAMS_DIR + "/"] if (path / PARAMS_DIR).is_dir() else []
    found += [f for f in hf.WEIGHT_FILES if (path / f).is_file()]
    t5x_dir = t5x.find_checkpoint(path)
    if t5x_dir is not None:
        found.append(t5x_dir.name + "/" if t5x_dir != path else t5x.MSGPACK_FILE)
    return found


def _check_unambiguous(path: Path) -> None:
    """CheckpointError if `path` is a training run that also holds other weights: loading
    either silently would hide the other."""
    steps = training_steps(path)
    others = _other_weights(path) if steps else []
    if others:
        raise CheckpointError(
            path,
            f"holds both training steps ({', '.join(map(str, steps))}) and other weights "
            f"({', '.join(others)}), so which to load is ambiguous",
            f"Pass {path / str(steps[-1])} for the latest training step, or move the other "
            "weights to a directory of their own.",
        )


def _find_params_dir(path: Path) -> Path | None:
    """The directory holding params/ at `path`: itself, or its latest numbered step."""
    _check_unambiguous(path)
    if (path / PARAMS_DIR).is_dir():
        return path
    steps = training_steps(path)
    return path / str(steps[-1]) if steps else None


def check_destination(path: str | Path, fmt: Format) -> Path:
    """The directory `save_any(path, ..., fmt)` writes; CheckpointError if it already
    holds a checkpoint or is a training run (whose steps the new weights would shadow),
    so that a caller can fail before reading a large source."""
    target = Path(path).absolute()
    steps = training_steps(target)
    if steps:
        raise CheckpointError(
            target,
            f"is a flan_jax.train run directory (steps {', '.join(map(str, steps))}); weights "
            "written there would be confused with its checkpoints",
            "Choose a new directory.",
        )
    if fmt == "hf":
        return hf.destination(path)
    if fmt == "t5x":
        return t5x.destination(path)
    if fmt == "flan_jax":
        directory = Path(path).absolute()
        if (directory / PARAMS_DIR).exists():
            raise CheckpointError(
                directory / PARAMS_DIR, "already exists", "Choose a new directory."
            )
        return directory
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {FORMATS}")


def save_params(path: str | Path, params: Params, config: T5Config) -> Path:
    """Writes a plain parameter checkpoint: DIR/params (orbax) + DIR/config.json.

    The tree is checked against `config` first, so a written checkpoint always loads.
    """
    directory = check_destination(path, "flan_jax")
    params = layout.to_per_layer(params)
    check_params(params, config)
    directory.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(directory / PARAMS_DIR, params)
    write_config(directory / CONFIG_FILE, config)
    return directory


def load_params(path: str | Path, config: T5Config | None = None) -> tuple[Params, T5Config]:
    """Reads a flan_jax parameter checkpoint (see `save_params`) into (params, config).

    With `config`, the stored config must agree with it on the architecture.
    """
    requested = Path(path).absolute()
    directory = _find_params_dir(requested)
    if directory is None:
        raise CheckpointError(
            requested, f"no flan_jax checkpoint here (expected a '{PARAMS_DIR}' subdirectory)"
        )
    config_path = next(
        (p for p in (directory / CONFIG_FILE, directory.parent / CONFIG_FILE) if p.is_file()),
        directory / CONFIG_FILE,
    )
    loaded = read_config(config_path)
    flat = flatten(layout.to_per_layer(read_orbax(directory / PARAMS_DIR)))
    problems = param_problems(flat, loaded)
    config = resolve_config(loaded, config, problems)
    if problems:
        raise CheckpointError(directory, problems)
    return unflatten(flat), config


_EXPECTED = (
    "a Hugging Face directory (config.json + model.safetensors or pytorch_model.bin), a t5x "
    "checkpoint (checkpoint_<step> directories holding an orbax 'state' directory or a msgpack "
    f"file named 'checkpoint'), or a flan_jax checkpoint (a '{PARAMS_DIR}' directory + "
    f"{CONFIG_FILE}, or a flan_jax.train run directory)"
)


def detect_format(path: str | Path) -> Format:
    """Which layout is at `path`; CheckpointError saying what was looked for if none."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "does not exist", f"Pass {_EXPECTED}.")
    _check_unambiguous(path)
    if path.is_dir() and hf.is_hf_dir(path):
        return "hf"
    if t5x.find_checkpoint(path) is not None:
        return "t5x"
    if path.is_dir() and _find_params_dir(path) is not None:
        return "flan_jax"
    raise CheckpointError(
        path,
        "not a recognised checkpoint",
        f"Expected {_EXPECTED}.",
    )


def locate(path: str | Path) -> tuple[Format, Path, int | None]:
    """What `load_any(path)` reads: the layout, the directory of the weights (a training
    run's latest step, a t5x model directory's latest checkpoint_<step>) and the training
    step, where the layout records one (None for Hugging Face)."""
    path = Path(path).absolute()
    fmt = detect_format(path)
    if fmt == "flan_jax":
        directory = _find_params_dir(path)
        return fmt, directory, int(directory.name) if directory.name.isdigit() else None
    if fmt == "t5x":
        directory = t5x.find_checkpoint(path)
        return fmt, directory, t5x.checkpoint_step(directory)
    return fmt, path, None


def load_any(
    path: str | Path,
    *,
    fmt: Format | None = None,
    config: T5Config | None = None,
    dtype: str | None = None,
    show_progress: bool = False,
) -> tuple[Params, T5Config]:
    """Reads a checkpoint of any supported layout (detected unless `fmt` is given)
    into (params, config), cast to `dtype` if given.

    With `config`, the checkpoint must agree with it on the architecture and
    `config` is returned (it carries the run's dtype, dropout and remat settings).
    """
    fmt = fmt or detect_format(path)
    if fmt == "hf":
        params, config = load_hf(path, config, show_progress=show_progress)
    elif fmt == "t5x":
        params, config = load_t5x(path, config, show_progress=show_progress)
    elif fmt == "flan_jax":
        params, config = load_params(path, config)
    else:
        raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {FORMATS}")
    return layout.for_config(cast(params, dtype), config), config


def save_any(
    path: str | Path,
    params: Params,
    config: T5Config,
    fmt: Format,
    *,
    t5x_layout: t5x.T5xLayout = "msgpack",
    tokenizer: TokenizerFiles | None = None,
    show_progress: bool = False,
) -> Path:
    """Writes `params` in layout `fmt` (t5x: `t5x_layout`, 'msgpack' or 'orbax'; hf: with
    the `tokenizer` files, if given); returns the directory written (for t5x, the
    checkpoint_<step> directory)."""
    check_destination(path, fmt)
    if tokenizer is not None and fmt != "hf":
        raise ValueError("tokenizer files are written only into a Hugging Face directory")
    if fmt == "hf":
        return save_hf(path, params, config, tokenizer=tokenizer, show_progress=show_progress)
    if fmt == "t5x":
        return save_t5x(path, params, config, t5x_layout=t5x_layout, show_progress=show_progress)
    if fmt == "flan_jax":
        return save_params(path, params, config)
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {FORMATS}")
