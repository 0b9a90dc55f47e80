"""Training checkpoints: an orbax CheckpointManager over MODEL_DIR that checks itself.

Layout (each step written atomically: orbax writes a temporary directory and renames it):

    MODEL_DIR/config.json            the model (Hugging Face style, flan_jax.interop.checkpoints)
    MODEL_DIR/<step>/params/         plain parameter tree -> flan_jax.interop.checkpoints.load_any
    MODEL_DIR/<step>/opt_state/      optimizer state (as a flax state dict)
    MODEL_DIR/<step>/data/           data iterator state (batches consumed), JSON
    MODEL_DIR/corrupt/<step>/        a step that failed to restore, moved aside (never deleted)

Saves are asynchronous (the train loop continues while arrays are written); keep-N is
orbax's `max_to_keep`. Steps are stored in the run's parameter layout (scanned or per
layer, `flan_jax.models.layout`); a run restores a step of either layout, so the same
MODEL_DIR resumes on a CPU (per layer) and on a GPU or TPU (scanned). `restore_or_none`
refuses a MODEL_DIR whose config.json, stored
parameters or optimizer state disagree with the configured run and names every mismatch;
a damaged step (an item missing or unreadable) is moved aside and the newest step that
restores is used instead. A save that cannot be written (full disk, permissions) stops the
run with `CheckpointSaveError`, keeping the steps saved before it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import orbax.checkpoint as ocp
from flax import traverse_util

from flan_jax.errors import RunStopped
from flan_jax.interop.common import (
    CheckpointError,
    config_problems,
    flatten,
    param_problems,
    read_config,
    write_config,
)
from flan_jax.models import layout
from flan_jax.models.config import T5Config
from flan_jax.training import run_dir
from flan_jax.training.step import TrainState

ITEMS = ("params", "opt_state", "data")
CORRUPT_DIR = "corrupt"
_MAX_LISTED = 8  # mismatched optimizer-state entries named before "and N more"


def _shapes(tree: Any) -> Any:
    """Orbax array metadata as ShapeDtypeStructs (which the layout functions convert)."""
    return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)


class CheckpointSaveError(RunStopped):
    """A checkpoint could not be written; the steps saved before it are kept."""


class DamagedStep(Exception):
    """One item of one step cannot be restored (internal: the caller falls back)."""

    def __init__(self, step: int, item: str, reason: str):
        self.step, self.item, self.reason = step, item, reason
        super().__init__(f"step {step}: {item} {reason}")


class Restored(NamedTuple):
    state: TrainState
    data_state: dict
    notes: list[str]  # one paragraph per damaged step moved aside


def short_reason(e: BaseException) -> str:
    """The root cause of an orbax/TensorStore exception in one line, without the
    TensorStore spec that follows it; an OS error TensorStore wraps is named as such."""
    while e.__cause__ is not None:
        e = e.__cause__
    if isinstance(e, OSError):
        return run_dir.os_error_text(e)
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if code := re.search(r"\[os_error_code='(\d+)'\]", text):
        return run_dir.os_error_text(OSError(int(code.group(1)), os.strerror(int(code.group(1)))))
    text = re.sub(r"\s*\[tensorstore_spec.*$", "", text)
    return text if len(text) <= 300 else text[:297] + "..."


class _OrbaxThreadErrors(logging.Filter):
    """Drops the tracebacks that orbax's background threads log for a failed read or write,
    and asyncio's for the reads and writes abandoned after it (logged whenever they are
    garbage-collected, up to the interpreter's exit): TrainCheckpoints reports every such
    failure itself, in one paragraph with its root cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "asyncio":  # e.g. "Future exception was never retrieved"
            traceback = record.exc_info[2] if record.exc_info else None
            return "orbax" not in record.getMessage() and not _raised_in_orbax(traceback)
        return record.levelno < logging.ERROR or "orbax" not in record.pathname


_FILTER = _OrbaxThreadErrors()


def _raised_in_orbax(tb: Any) -> bool:
    while tb is not None:
        if "orbax" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _quiet_abandoned_io(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook that drops 'Event loop is closed' (TensorStore's
    callbacks raise it for the writes orbax abandoned after a failed one) and the errors
    of orbax's abandoned read coroutines, collected after a damaged step was reported."""

    def hook(unraisable: Any) -> None:
        value = unraisable.exc_value
        closed_loop = isinstance(value, RuntimeError) and str(value) == "Event loop is closed"
        if not (closed_loop or _raised_in_orbax(unraisable.exc_traceback)):
            previous(unraisable)

    hook.quiets_abandoned_io = True
    return hook


def _quiet_orbax_failures() -> None:
    """Installs the log filter and the hook above, once per process."""
    for name in ("absl", "asyncio"):
        logging.getLogger(name).addFilter(_FILTER)  # a no-op when already there
    if not getattr(sys.unraisablehook, "quiets_abandoned_io", False):
        sys.unraisablehook = _quiet_abandoned_io(sys.unraisablehook)


def _tree_problems(stored: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """Entries of a flat stored tree missing from, extra to, or shaped unlike `target`."""
    problems = [f"missing {k}" for k in sorted(set(target) - set(stored))]
    problems += [f"unexpected {k}" for k in sorted(set(stored) - set(target))]
    problems += [f"{k} has shape {tuple(stored[k].shape)}, expected {tuple(target[k].shape)}"
                 for k in sorted(set(stored) & set(target))
                 if tuple(stored[k].shape) != tuple(target[k].shape)]
    if len(problems) > _MAX_LISTED:
        problems = problems[:_MAX_LISTED] + [f"and {len(problems) - _MAX_LISTED} more"]
    return problems


class TrainCheckpoints:
    """Periodic, keep-N, async, atomic checkpoints of a `TrainState` plus data state."""

    def __init__(self, model_dir: str | Path, config: T5Config, *, period: int,
                 keep: int | None = 3, async_save: bool = True):
        self.model_dir = Path(model_dir).absolute()
        self.config = config
        self.period = period
        self._saving: int | None = None  # the step whose save may still be in flight
        self._failed = False
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        handlers = {"params": ocp.StandardCheckpointHandler(),
                    "opt_state": ocp.StandardCheckpointHandler(),
                    "data": ocp.JsonCheckpointHandler()}
        _quiet_orbax_failures()
        self.manager = ocp.CheckpointManager(self.model_dir, options=options,
                                             item_handlers=handlers)
        # The newest step known to be complete on disk. Not orbax's latest_step: with keep-N,
        # orbax forgets the oldest step when a save starts, before that save has succeeded.
        self._committed = self.manager.latest_step()

    def latest_step(self) -> int | None:
        """The newest step known to be saved completely."""
        return self._committed

    def step_dir(self, step: int) -> Path:
        return self.model_dir / str(step)

    # -- saving -------------------------------------------------------------------------

    def save(self, state: TrainState, data_state: dict, *, force: bool = False) -> bool:
        """Saves at `state.step` when it is a multiple of the period (or `force`)."""
        step = int(state.step)
        if not force and (self.period <= 0 or step % self.period):
            return False
        if step in self.manager.all_steps():
            return False
        self.wait()  # a failure of the previous save is reported as that step's
        needed = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(
            (state.params, state.opt_state)))
        try:
            free = run_dir.free_bytes(self.model_dir)
        except OSError:
            free = None
        if free is not None and free < needed:
            raise self._save_error(step, f"not enough space: a checkpoint takes at least "
                                         f"{run_dir.human_bytes(needed)}")
        try:  # orbax waits minutes for a step directory it failed to create: check first
            run_dir.ensure_writable(self.model_dir)
        except run_dir.RunDirError as e:
            raise self._save_error(step, f"the directory is not writable: {e.reason}") from None
        self._saving = step
        try:
            config_path = self.model_dir / "config.json"
            if jax.process_index() == 0 and not config_path.exists():
                write_config(config_path, self.config)
            return self.manager.save(step, args=ocp.args.Composite(
                params=ocp.args.StandardSave(state.params),
                opt_state=ocp.args.StandardSave(
                    flax.serialization.to_state_dict(state.opt_state)),
                data=ocp.args.JsonSave(dict(data_state))), force=True)
        except Exception as e:
            raise self._save_error(step, short_reason(e)) from None

    def _save_error(self, step: int, reason: str) -> CheckpointSaveError:
        self._failed = True
        kept = self.latest_step()
        if kept is not None and kept != step:
            after = (f"the last good checkpoint, step {kept}, is kept. Free some space or fix "
                     "the permissions (or lower train.keep_checkpoints, or use another "
                     f"MODEL_DIR), then run the same command to resume from step {kept}.")
        else:
            after = ("no checkpoint was saved before it. Free some space or fix the "
                     "permissions, then run the same command to start again.")
        return CheckpointSaveError(
            f"cannot save checkpoint step {step} in {self.model_dir}: {reason}; "
            f"{run_dir.free_space(self.model_dir)} on that filesystem. Training stopped; {after}")

    def _finish(self, close: bool) -> None:
        try:
            self.manager.wait_until_finished()
            if self._saving is not None and not self._failed:
                self._committed, self._saving = self._saving, None
            if close:
                self.manager.close()
        except Exception as e:
            if self._failed:  # already reported; the same failure surfaces again
                return
            step = self._saving if self._saving is not None else "(unknown)"
            raise self._save_error(step, short_reason(e)) from None

    def wait(self) -> None:
        """Waits for the save in flight; CheckpointSaveError if it failed."""
        self._finish(close=False)

    def close(self) -> None:
        self._finish(close=True)

    # -- restoring ------------------------------------------------------------------------

    def check_compatible(self, step: int, stored_params: Any = None) -> None:
        """CheckpointError naming every disagreement between MODEL_DIR and the model."""
        problems = []
        config_path = self.model_dir / "config.json"
        if config_path.is_file():
            problems += config_problems(self.config, read_config(config_path))
        if stored_params is None:
            stored_params = self.manager.item_metadata(step)["params"]
        stored = getattr(stored_params, "tree", stored_params)  # metadata object or tree
        problems += param_problems(flatten(layout.to_per_layer(_shapes(stored))), self.config)
        if problems:
            raise CheckpointError(
                self.step_dir(step),
                problems + ["This MODEL_DIR holds a checkpoint of a different model. Use a new "
                            "MODEL_DIR, delete this one, or configure the model it was "
                            "trained with (to start from its weights instead, set "
                            "INITIAL_CHECKPOINT_PATH)."])

    def _item_metadata(self, step: int, item: str) -> Any:
        try:
            metadata = ocp.StandardCheckpointHandler().metadata(self.step_dir(step) / item)
        except Exception as e:
            raise DamagedStep(step, item, f"has unreadable metadata ({short_reason(e)})") from None
        return getattr(metadata, "tree", metadata)

    def _restore_step(self, step: int, abstract_state: TrainState) -> tuple[TrainState, dict]:
        """The state and data state of `step`; DamagedStep naming the first item that does
        not restore, CheckpointError if the step belongs to a different run configuration."""
        for item in ITEMS:
            if not (self.step_dir(step) / item).is_dir():
                raise DamagedStep(step, item, "is missing")
        stored_params = self._item_metadata(step, "params")
        self.check_compatible(step, stored_params)
        target = abstract_state
        convert = layout.is_scanned(stored_params) != self.config.scan_layers
        if convert:  # restore as stored onto the host, then convert and place
            host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
            stored_layout = layout.to_per_layer if self.config.scan_layers else layout.to_scanned
            target = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=host),
                stored_layout(abstract_state))
        opt_target = flax.serialization.to_state_dict(target.opt_state)
        problems = _tree_problems(
            traverse_util.flatten_dict(self._item_metadata(step, "opt_state"), sep="/"),
            traverse_util.flatten_dict(opt_target, sep="/"))
        if problems:
            raise CheckpointError(
                self.step_dir(step) / "opt_state",
                problems + ["The optimizer state was saved by different optimizer settings "
                            "(factored, momentum, learning-rate schedule...). Configure the "
                            "optimizer this run was trained with, or start a new MODEL_DIR "
                            f"with INITIAL_CHECKPOINT_PATH={self.step_dir(step)}."])
        args = {"params": ocp.args.StandardRestore(target.params),
                "opt_state": ocp.args.StandardRestore(opt_target),
                "data": ocp.args.JsonRestore()}
        restored = {}
        for item, arg in args.items():
            try:
                restored[item] = self.manager.restore(
                    step, args=ocp.args.Composite(**{item: arg}))[item]
            except Exception as e:
                raise DamagedStep(step, item, f"cannot be read ({short_reason(e)})") from None
        data_state = restored["data"]
        if not isinstance(data_state, dict) or not isinstance(
                data_state.get("batches_consumed"), int):
            raise DamagedStep(step, "data", f"holds {data_state!r}, not a batch count")
        params = restored["params"]
        opt_state = flax.serialization.from_state_dict(target.opt_state, restored["opt_state"])
        if convert:
            shardings = jax.tree_util.tree_map(lambda a: a.sharding, abstract_state)
            params = jax.device_put(layout.for_config(params, self.config), shardings.params)
            opt_state = jax.device_put(layout.for_config(opt_state, self.config),
                                       shardings.opt_state)
        step_array = jax.device_put(jax.numpy.asarray(step, jax.numpy.int32),
                                    abstract_state.step.sharding)
        return TrainState(step_array, params, opt_state), dict(data_state)

    def _set_aside(self, damaged: DamagedStep, resumed: int) -> str:
        """Moves a damaged step under MODEL_DIR/corrupt/; the paragraph that says so."""
        target = self.model_dir / CORRUPT_DIR / str(damaged.step)
        n = 1
        while target.exists():
            n += 1
            target = self.model_dir / CORRUPT_DIR / f"{damaged.step}.{n}"
        if jax.process_index() == 0:
            target.parent.mkdir(exist_ok=True)
            self.step_dir(damaged.step).rename(target)
        return (f"Checkpoint step {damaged.step} in {self.model_dir} cannot be restored: "
                f"its {damaged.item} {damaged.reason}. Moved it to {target} (kept, not "
                f"deleted); resuming from step {resumed}, the newest step that restores.")

    def restore_or_none(self, abstract_state: TrainState) -> Restored | None:
        """The newest step that restores, placed as `abstract_state`'s shardings (newer
        damaged steps are moved aside, with a note each), or None if MODEL_DIR holds no
        checkpoint. CheckpointError if no step restores (nothing is moved then)."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        damaged: list[DamagedStep] = []
        for step in steps:
            try:
                state, data_state = self._restore_step(step, abstract_state)
                break
            except DamagedStep as d:
                damaged.append(d)
        else:
            raise CheckpointError(
                self.model_dir,
                [f"{d}" for d in damaged],
                "No checkpoint in this MODEL_DIR restores; nothing was moved or deleted. "
                "Put back the damaged files from a backup, or start a new MODEL_DIR (with "
                f"INITIAL_CHECKPOINT_PATH={self.model_dir}/<step> to keep the weights of a "
                "step whose params are intact).")
        self._committed = step
        notes = [self._set_aside(d, step) for d in damaged]
        if damaged:
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils
                multihost_utils.sync_global_devices("flan_jax: damaged steps set aside")
            self.manager.reload()
        return Restored(state, data_state, notes)
