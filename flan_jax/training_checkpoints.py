"""Training checkpoints: an orbax CheckpointManager over MODEL_DIR.

Layout (each step written atomically: orbax writes a temporary directory and renames it):

    MODEL_DIR/config.json            the model (Hugging Face style, flan_jax.checkpoints)
    MODEL_DIR/<step>/params/         plain parameter tree -> flan_jax.checkpoints.load_any
    MODEL_DIR/<step>/opt_state/      optimizer state (as a flax state dict)
    MODEL_DIR/<step>/data/           data iterator state (batches consumed), JSON

Saves are asynchronous (the train loop continues while arrays are written); keep-N is
orbax's `max_to_keep`. Steps are stored in the run's parameter layout (scanned or per
layer, `flan_jax.models.layout`); a run restores a step of either layout, so the same
MODEL_DIR resumes on a CPU (per layer) and on a GPU or TPU (scanned). `restore_or_none` refuses a MODEL_DIR whose config.json or
stored parameters disagree with the configured model and names every mismatch.
"""

from __future__ import annotations

from pathlib import Path

import flax.serialization
import jax
import orbax.checkpoint as ocp

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
from flan_jax.train_step import TrainState


class TrainCheckpoints:
    """Periodic, keep-N, async, atomic checkpoints of a `TrainState` plus data state."""

    def __init__(self, model_dir: str | Path, config: T5Config, *, period: int,
                 keep: int | None = 3, async_save: bool = True):
        self.model_dir = Path(model_dir).absolute()
        self.config = config
        self.period = period
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True,
            enable_async_checkpointing=async_save, cleanup_tmp_directories=True)
        handlers = {"params": ocp.StandardCheckpointHandler(),
                    "opt_state": ocp.StandardCheckpointHandler(),
                    "data": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.model_dir, options=options,
                                             item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, data_state: dict, *, force: bool = False) -> bool:
        """Saves at `state.step` when it is a multiple of the period (or `force`)."""
        step = int(state.step)
        if not force and (self.period <= 0 or step % self.period):
            return False
        if step in self.manager.all_steps():
            return False
        config_path = self.model_dir / "config.json"
        if jax.process_index() == 0 and not config_path.exists():
            write_config(config_path, self.config)
        return self.manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            opt_state=ocp.args.StandardSave(flax.serialization.to_state_dict(state.opt_state)),
            data=ocp.args.JsonSave(dict(data_state))), force=True)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def check_compatible(self, step: int) -> None:
        """CheckpointError naming every disagreement between MODEL_DIR and the model."""
        problems = []
        config_path = self.model_dir / "config.json"
        if config_path.is_file():
            problems += config_problems(self.config, read_config(config_path))
        problems += param_problems(flatten(layout.to_per_layer(self._stored_params(step))),
                                   self.config)
        if problems:
            raise CheckpointError(
                self.model_dir / str(step),
                problems + ["This MODEL_DIR holds a checkpoint of a different model. Use a new "
                            "MODEL_DIR, delete this one, or configure the model it was "
                            "trained with (to start from its weights instead, set "
                            "INITIAL_CHECKPOINT_PATH)."])

    def _stored_params(self, step: int) -> dict:
        """The stored parameter tree of `step` as ShapeDtypeStructs."""
        stored = self.manager.item_metadata(step)["params"]
        stored = getattr(stored, "tree", stored)  # metadata object or plain tree
        return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), stored)

    def restore_or_none(self, abstract_state: TrainState) -> tuple[TrainState, dict] | None:
        """(state, data_state) of the latest step, placed as `abstract_state`'s shardings,
        or None if MODEL_DIR holds no checkpoint."""
        step = self.manager.latest_step()
        if step is None:
            return None
        self.check_compatible(step)
        convert = layout.is_scanned(self._stored_params(step)) != self.config.scan_layers
        target = abstract_state
        if convert:  # restore as stored onto the host, then convert and place
            host = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
            stored_layout = layout.to_per_layer if self.config.scan_layers else layout.to_scanned
            target = jax.tree_util.tree_map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=host),
                stored_layout(abstract_state))
        restored = self.manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(target.params),
            opt_state=ocp.args.StandardRestore(flax.serialization.to_state_dict(
                target.opt_state)),
            data=ocp.args.JsonRestore()))
        params = restored["params"]
        opt_state = flax.serialization.from_state_dict(target.opt_state, restored["opt_state"])
        if convert:
            shardings = jax.tree_util.tree_map(lambda a: a.sharding, abstract_state)
            params = jax.device_put(layout.for_config(params, self.config), shardings.params)
            opt_state = jax.device_put(layout.for_config(opt_state, self.config),
                                       shardings.opt_state)
        step_array = jax.device_put(jax.numpy.asarray(step, jax.numpy.int32),
                                    abstract_state.step.sharding)
        return TrainState(step_array, params, opt_state), dict(restored["data"])
