"""Multi-host on one CPU: 2 processes x 2 CPU devices joined by `jax.distributed`.

Each process runs this file as a script (`python tests/training/test_multihost_cpu.py PROCESS_ID
PORT`), the way each host of a Cloud TPU slice runs the same command. They check:
a global array built from per-process rows and a `psum` over the 'data' axis; per-host
input sharding through seqio `ShardInfo` (disjoint shards that cover the split); and one
training step of the tiny T5 on a ('data', 'model') = (2, 2) mesh whose loss equals the
single-process loss on the same global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUM_PROCESSES = 2
LOCAL_DEVICES = 2
GLOBAL_BATCH = 8


def _batch(vocab_size: int):
    """The same global batch everywhere (rows [8, 16] inputs, [8, 8] targets)."""
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = rng.integers(2, vocab_size, (GLOBAL_BATCH, 16), dtype=np.int32)
    targets = rng.integers(2, vocab_size, (GLOBAL_BATCH, 8), dtype=np.int32)
    return {
        "encoder_input_tokens": inputs,
        "decoder_input_tokens": np.pad(targets, ((0, 0), (1, 0)))[:, :-1],
        "decoder_target_tokens": targets,
        "decoder_loss_weights": np.ones_like(targets),
    }


def _train_loss(mesh=None, rows=slice(None)) -> float:
    """Loss of one train step of the tiny T5 (replicated state) on the global batch."""
    import jax

    from flan_jax.models import t5
    from flan_jax.training import partitioning
    from flan_jax.training.optimizers import make_optimizer
    from flan_jax.training.step import init_train_state, make_train_step

    config = t5.get_config("tiny")
    optimizer = make_optimizer(learning_rate=1e-3)
    state = init_train_state(config, optimizer, jax.random.key(0))
    batch = {k: v[rows] for k, v in _batch(config.vocab_size).items()}
    step = jax.jit(make_train_step(config, optimizer))
    if mesh is not None:
        replicated = partitioning.replicated(mesh)
        state = jax.tree.map(lambda x: jax.make_array_from_callback(
            x.shape, replicated, lambda index, x=x: jax.device_get(x)[index]), state)
        batch = partitioning.global_batch(batch, mesh)
    _, metrics = step(state, batch, jax.random.key(1))
    return float(jax.device_get(metrics["loss"]))


def _worker(process_id: int, port: int) -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", LOCAL_DEVICES)
    import jax.numpy as jnp
    import numpy as np
    import seqio
    from jax.experimental import multihost_utils
    from jax.sharding import PartitionSpec as P

    from flan_jax.training import partitioning

    partitioning.initialize_distributed(f"localhost:{port}", NUM_PROCESSES, process_id)
    result = {"process_index": jax.process_index(), "process_count": jax.process_count(),
              "global_devices": jax.device_count(), "local_devices": jax.local_device_count()}

    # A global array from per-process rows, and a psum over 'data'.
    mesh = partitioning.make_mesh(num_partitions=2)
    local = np.arange(4, dtype=np.float32)[:, None] + 100 * process_id
    global_x = jax.make_array_from_process_local_data(partitioning.batch_sharding(mesh), local)
    result["global_shape"] = list(global_x.shape)
    psum = jax.jit(jax.shard_map(lambda x: jax.lax.psum(jnp.sum(x), "data"), mesh=mesh,
                                 in_specs=P("data"), out_specs=P()))(global_x)
    result["psum"] = float(jax.device_get(psum))

    # Per-host input sharding through seqio ShardInfo.
    import flan_jax.catalog  # noqa: F401

    task = seqio.get_mixture_or_task("demo_arithmetic_zs_noopt")
    ds = task.get_dataset(None, split="validation", shuffle=False, num_epochs=1,
                          shard_info=partitioning.host_shard_info())
    indices = np.array(sorted(int(ex["_example_index"]) for ex in ds.as_numpy_iterator()))
    counts = multihost_utils.process_allgather(np.array([len(indices)]))
    result["shard_sizes"] = [int(c) for c in np.ravel(counts)]
    padded = np.full(1000, -1, np.int64)
    padded[:len(indices)] = indices
    everyone = multihost_utils.process_allgather(padded)
    result["all_indices"] = sorted(int(i) for i in np.ravel(everyone) if i >= 0)

    # One train step on the (data 2, model 2) mesh spanning both processes.
    rows = slice(process_id * GLOBAL_BATCH // 2, (process_id + 1) * GLOBAL_BATCH // 2)
    result["loss"] = _train_loss(mesh, rows)
    print("RESULT " + json.dumps(result), flush=True)
    jax.distributed.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_share_arrays_inputs_and_a_train_step():
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "FLAN_JAX_VOCAB": "byte",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(NUM_PROCESSES)]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.fail("multi-process workers timed out")
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(next(line for line in out.splitlines()
                                       if line.startswith("RESULT "))[len("RESULT "):]))

    import seqio

    import flan_jax.catalog  # noqa: F401

    split_size = sum(1 for _ in seqio.get_mixture_or_task("demo_arithmetic_zs_noopt")
                     .get_dataset(None, split="validation", shuffle=False, num_epochs=1))
    single = _train_loss()
    for i, r in enumerate(results):
        assert r["process_index"] == i and r["process_count"] == NUM_PROCESSES
        assert r["global_devices"] == NUM_PROCESSES * LOCAL_DEVICES
        assert r["global_shape"] == [8, 1]
        assert r["psum"] == sum(range(4)) + sum(100 + x for x in range(4))
        assert sum(r["shard_sizes"]) == split_size and min(r["shard_sizes"]) > 0
        assert r["all_indices"] == sorted(set(r["all_indices"]))  # disjoint shards
        assert len(r["all_indices"]) == split_size
        assert r["loss"] == pytest.approx(single, rel=1e-5)


if __name__ == "__main__":
    _worker(int(sys.argv[1]), int(sys.argv[2]))
