#!/usr/bin/env bash
# The accelerator figures of docs/benchmarks.md in one run on one GPU (or TPU: BACKEND=tpu):
# a smoke check, then training throughput against HF PyTorch at 512/128 (bf16: flan_jax and
# HF eager; float32: flan_jax) for small, base, large and xl, then greedy decoding.
# Needs the model side only (jax, flax, optax, orbax, gin-config; torch + transformers for
# the peer). Writes logs and JSON to OUTDIR.
#
#   bash benchmarks/accelerator.sh OUTDIR [extra train_step.py arguments]
set -uo pipefail
out=${1:?usage: accelerator.sh OUTDIR}
shift
backend=${BACKEND:-gpu}
here=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$here/..${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$out"

python3 - <<'EOF' || { echo "smoke check failed: not timing anything"; exit 1; }
import time
import jax, jax.numpy as jnp, numpy as np
from flan_jax.models import t5
from flan_jax.training.optimizers import make_optimizer
from flan_jax.training.step import init_train_state, make_train_step
print("devices:", jax.devices(), "jax", jax.__version__)
for dtype in ("bfloat16", "float32"):
    config = t5.get_config("tiny", dtype=dtype)
    optimizer = make_optimizer(learning_rate=1e-2)
    state = init_train_state(config, optimizer, jax.random.key(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(2, 128, (4, 16)), jnp.int32)
    batch = {"encoder_input_tokens": tokens, "decoder_target_tokens": tokens,
             "decoder_input_tokens": jnp.pad(tokens[:, :-1], ((0, 0), (1, 0)))}
    step = jax.jit(make_train_step(config, optimizer))
    t = time.perf_counter()
    losses = []
    for _ in range(5):
        state, metrics = step(state, batch, jax.random.key(1))
        losses.append(round(float(metrics["loss"]), 2))
    print(f"smoke {dtype}: scan_layers={config.scan_layers} losses {losses} "
          f"({time.perf_counter() - t:.1f} s with compile)")
    assert losses[-1] < losses[0], "the tiny model does not learn"
EOF

python3 "$here/train_step.py" --backend "$backend" --dtypes bfloat16 --frameworks jax torch \
    --repeats 1 --json "$out/train_bf16.json" "$@" 2>&1 | tee "$out/train_bf16.log"
python3 "$here/train_step.py" --backend "$backend" --dtypes float32 --frameworks jax \
    --repeats 1 --json "$out/train_f32.json" "$@" 2>&1 | tee "$out/train_f32.log"
python3 "$here/decode.py" --size base --batch-sizes 64 --input-length 512 --new-tokens 128 \
    --dtype bfloat16 --repeats 2 2>&1 | tee "$out/decode.log"
