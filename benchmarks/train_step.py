"""Training throughput: flan_jax vs Hugging Face transformers (PyTorch), same CPU, one run.

Both train a randomly initialised model with the flan-t5-small dimensions (76,961,152
float32 parameters) with Adafactor in the t5x setting (decay rate 0.8, update clipping
1.0, parameter-scale multiply, factored second moments, no momentum, constant LR 5e-4)
on the same random full-length batches (no padding): batch 8, (inputs, targets) lengths
64/64 and 256/64, in two precisions (`--dtypes`):

- float32: every operation in float32.
- bfloat16: mixed precision with float32 parameters and optimizer, matmuls in bf16 with
  float32 accumulation. flan_jax runs with `dtype='bfloat16'` (t5x's ACTIVATION_DTYPE, as
  the paper recipe trains); HF runs its forward under `torch.autocast('cpu', bfloat16)`
  (what `Trainer(bf16=True)` does on a CPU).

- flan_jax: `flan_jax.train_step.make_train_step` (the trainer's step: forward, z-loss
  cross-entropy, backward, Adafactor from `flan_jax.optimizers.make_optimizer`: optax's
  state, applied in place by `flan_jax.cpu_adafactor`'s kernel; float32 products through
  MKL, `flan_jax.models.cpu_matmul`), jitted with the state donated. Compilation is timed
  apart and excluded.
- Hugging Face: `T5ForConditionalGeneration(labels=...)` (given its own `lm_head`:
  transformers 5 ties it to the input embedding, which Flan-T5 does not) forward + backward +
  `transformers.optimization.Adafactor(scale_parameter=True, relative_step=False,
  decay_rate=-0.8, clip_threshold=1.0, beta1=None)`; `torch.set_num_threads(--threads)`.

Both run with the host allocator setting the trainer uses (`flan_jax.host_memory
.keep_freed_memory`: glibc keeps freed buffers instead of unmapping them, so a step does
not page-fault its working set in again); it speeds PyTorch up too, so HF gets it as well.
Each (framework, lengths) pair runs in its own subprocess, so each peak resident memory
(`ru_maxrss`) is that framework's alone; the pairs run round-robin `--repeats` times and
the best throughput of each is kept (the machine is shared; the best run is the least
disturbed one). Throughput is tokens/s = (input + target tokens) per second; target
tokens/s are printed too.

MFU = model FLOPs/s / peak. Model FLOPs per step are counted exactly for the matmuls
(`train_flops`: every projection, attention score and value product, MLP and logits,
forward x 3 for forward + backward; no recomputation counted): 189 GFLOP per step at
64/64 and 414 at 256/64. The "6 x parameters x tokens" rule would say 2.5x / 2.9x more:
in an encoder-decoder each token passes through one stack only (encoder tokens through the
encoder's 19M matmul parameters plus the cross-attention keys/values, decoder tokens
through the decoder's 25M plus the 16M logits), and the 16M-entry embedding table costs no
FLOPs. The peak is the best rate of a 2048 x 2048 x 2048 product in the row's precision
(bf16 operands, float32 accumulation for bfloat16) through the kernels flan_jax uses:
`jnp.dot`, and in float32 on a CPU flan_jax's MKL product (`flan_jax.models.cpu_matmul`),
measured in each round of the same run on the same threads; MFU* also counts `torch.mm`
(2 threads). `--frameworks jax-xla` adds flan_jax with `FLAN_JAX_CPU_MATMUL=0` (XLA's own
dots, float32 only) for the speed-up of the MKL products in the same run, and
`jax-xla-adafactor` flan_jax with `FLAN_JAX_CPU_ADAFACTOR=0` (the Adafactor update in XLA)
for that of the Adafactor kernel.

    python benchmarks/train_step.py [--repeats 2] [--steps 5] [--lengths 64/64 256/64]
                                    [--dtypes float32 bfloat16]
                                    [--frameworks jax jax-xla jax-xla-adafactor torch]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ADAFACTOR = dict(lr=5e-4, decay_rate=0.8, clipping=1.0)
# flan_jax workers: the environment each runs with.
FLAN_JAX_SWITCHES = {"jax": {}, "jax-xla": {"FLAN_JAX_CPU_MATMUL": "0"},
                     "jax-xla-adafactor": {"FLAN_JAX_CPU_ADAFACTOR": "0"}}


def train_flops(enc_len: int, dec_len: int, batch: int, d_model: int = 512, d_ff: int = 1024,
                layers: int = 8, heads: int = 6, d_kv: int = 64, vocab: int = 32128) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3 x forward) of a T5 v1.1."""
    hd = heads * d_kv
    enc_token = layers * (4 * 2 * d_model * hd       # q, k, v, o
                          + 2 * 2 * enc_len * hd      # scores and weighted values
                          + 3 * 2 * d_model * d_ff)   # gated-GELU MLP (wi_0, wi_1, wo)
    enc_token += layers * 2 * 2 * d_model * hd        # cross-attention k, v of each layer
    dec_token = layers * (4 * 2 * d_model * hd + 2 * 2 * dec_len * hd    # self-attention
                          + 2 * 2 * d_model * hd + 2 * 2 * enc_len * hd  # cross q, o, scores
                          + 3 * 2 * d_model * d_ff)
    dec_token += 2 * d_model * vocab                  # logits
    return 3.0 * batch * (enc_len * enc_token + dec_len * dec_token)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(step, steps: int) -> float:
    """Best seconds per step over `steps` calls of `step()` (which must block)."""
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def worker_peak(size: int, threads: int, dtype: str) -> dict:
    import torch

    from flan_jax.training_report import matmul_rates

    rates = matmul_rates(dtype, size, repeats=5)
    torch.set_num_threads(threads)
    ta = torch.randn(size, size, dtype=getattr(torch, dtype))
    tb = torch.randn(size, size, dtype=getattr(torch, dtype))
    rates["torch.mm"] = 2.0 * size ** 3 / _timed(lambda: ta @ tb, 5)
    return rates


def _batch(enc_len: int, dec_len: int, batch: int, vocab: int):
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = rng.integers(2, vocab, (batch, enc_len), dtype=np.int32)
    targets = rng.integers(2, vocab, (batch, dec_len), dtype=np.int32)
    return inputs, targets


def worker_jax(enc_len: int, dec_len: int, batch: int, steps: int, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from flan_jax.models import t5
    from flan_jax.optimizers import make_optimizer
    from flan_jax.train_step import init_train_state, make_train_step

    config = t5.get_config("small", dtype=dtype)
    optimizer = make_optimizer(learning_rate=ADAFACTOR["lr"], decay_rate=ADAFACTOR["decay_rate"],
                               clipping_threshold=ADAFACTOR["clipping"])
    state = init_train_state(config, optimizer, jax.random.key(0))
    inputs, targets = _batch(enc_len, dec_len, batch, config.vocab_size)
    data = {
        "encoder_input_tokens": jnp.asarray(inputs),
        "decoder_input_tokens": jnp.asarray(np.pad(targets, ((0, 0), (1, 0)))[:, :-1]),
        "decoder_target_tokens": jnp.asarray(targets),
        "decoder_loss_weights": jnp.ones(targets.shape, jnp.int32),
    }
    step = jax.jit(make_train_step(config, optimizer), donate_argnums=0)
    rng = jax.random.key(1)
    start = time.perf_counter()
    compiled = step.lower(state, data, rng).compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def run() -> None:
        holder[0], metrics = compiled(holder[0], data, rng)
        jax.block_until_ready(metrics)

    run()  # warm-up
    seconds = _timed(run, steps)
    loss = float(compiled(holder[0], data, rng)[1]["loss"])
    return {"step_s": seconds, "compile_s": compile_s, "loss": loss,
            "params": sum(x.size for x in jax.tree_util.tree_leaves(holder[0].params))}


def worker_torch(enc_len: int, dec_len: int, batch: int, steps: int, threads: int,
                 dtype: str) -> dict:
    import torch
    import transformers
    from transformers.optimization import Adafactor

    from flan_jax.models import t5

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf_config = transformers.T5Config(**t5.get_config("small").to_hf_dict())
    model = transformers.T5ForConditionalGeneration(hf_config).train()
    # transformers 5 ties lm_head to the input embedding whatever the config says; Flan-T5
    # (and flan_jax) keep them apart, so HF gets its own lm_head: the same 76,961,152
    # parameters to differentiate and update.
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    optimizer = Adafactor(model.parameters(), lr=ADAFACTOR["lr"], scale_parameter=True,
                          relative_step=False, warmup_init=False,
                          decay_rate=-ADAFACTOR["decay_rate"],
                          clip_threshold=ADAFACTOR["clipping"], beta1=None, weight_decay=0.0)
    inputs, targets = _batch(enc_len, dec_len, batch, hf_config.vocab_size)
    input_ids = torch.from_numpy(inputs).long()
    labels = torch.from_numpy(targets).long()
    last = {}
    mixed = dtype == "bfloat16"

    def run() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            loss = model(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last["loss"] = float(loss)

    run()  # warm-up
    seconds = _timed(run, steps)
    return {"step_s": seconds, "compile_s": 0.0, "loss": last["loss"],
            "params": sum(p.numel() for p in model.parameters())}


def _worker_main(args: argparse.Namespace) -> None:
    from flan_jax.host_memory import keep_freed_memory

    keep_freed_memory()
    if args.worker == "peak":
        result = worker_peak(args.matmul_size, args.threads, args.dtype)
    elif args.worker in FLAN_JAX_SWITCHES:
        result = worker_jax(args.enc, args.dec, args.batch, args.steps, args.dtype)
    else:
        result = worker_torch(args.enc, args.dec, args.batch, args.steps, args.threads,
                              args.dtype)
    result["peak_rss_mib"] = peak_rss_mib()
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(*extra: str, switches: dict[str, str] | None = None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": "cpu", **(switches or {})}
    proc = subprocess.run([sys.executable, __file__, *extra], capture_output=True, text=True,
                          env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {extra} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", default=["64/64", "256/64"],
                        help="INPUTS/TARGETS lengths")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per worker")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--frameworks", nargs="+", default=["jax", "torch"],
                        choices=[*FLAN_JAX_SWITCHES, "torch"],
                        help="jax-xla: flan_jax with XLA's own dots; jax-xla-adafactor: with "
                             "the Adafactor update in XLA")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16"], help="precisions to compare")
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["peak", *FLAN_JAX_SWITCHES, "torch"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--enc", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dec", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker_main(args)
        return

    import jax
    import torch
    import transformers

    print(f"flan-t5-small dims, random init, batch {args.batch}; jax {jax.__version__} (CPU), "
          f"torch {torch.__version__} ({args.threads} threads), transformers "
          f"{transformers.__version__}; {os.cpu_count()} CPUs; best of {args.repeats} "
          f"round-robin rounds x {args.steps} steps", flush=True)
    shapes = [tuple(int(x) for x in s.split("/")) for s in args.lengths]
    common = ["--batch", str(args.batch), "--steps", str(args.steps),
              "--threads", str(args.threads)]
    best: dict[tuple, dict] = {}
    peaks: dict[str, dict[str, float]] = {dtype: {} for dtype in args.dtypes}  # FLOP/s
    for round_ in range(args.repeats):
        for dtype in args.dtypes:
            r = _run_worker("--worker", "peak", "--matmul-size", str(args.matmul_size),
                            "--threads", str(args.threads), "--dtype", dtype)
            r.pop("peak_rss_mib")
            peaks[dtype] = {k: max(v, peaks[dtype].get(k, 0.0)) for k, v in r.items()}
            for enc, dec in shapes:
                for fw in args.frameworks:
                    if fw == "jax-xla" and dtype != "float32":
                        continue  # the MKL products are float32 only
                    r = _run_worker("--worker", fw, "--enc", str(enc), "--dec", str(dec),
                                    "--dtype", dtype, *common,
                                    switches=FLAN_JAX_SWITCHES.get(fw))
                    key = (fw, dtype, enc, dec)
                    print(f"  round {round_ + 1}: {fw:5s} {dtype} {enc}/{dec}: "
                          f"{r['step_s']:.3f} s/step, loss {r['loss']:.3f}, "
                          f"{r['params']:,} params, peak RSS {r['peak_rss_mib']:.0f} MiB",
                          flush=True)
                    if key not in best or r["step_s"] < best[key]["step_s"]:
                        best[key] = r
    print()
    for dtype, p in peaks.items():
        rates = ", ".join(f"{name} {rate / 1e9:.1f}" for name, rate in p.items())
        print(f"measured {dtype} matmul peak ({args.matmul_size}^3, GFLOP/s): {rates} "
              f"(torch.mm: {args.threads} threads)")
    print("MFU: against the better of jnp.dot and flan_jax's MKL product in the row's "
          "precision; MFU*: against the best of those and torch.mm")
    print(f"{'dtype':>8} {'lengths':>8} {'framework':>17} {'tokens/s':>9} {'tgt tok/s':>9} "
          f"{'GFLOP/s':>8} {'MFU':>6} {'MFU*':>6} {'peak MiB':>9} {'compile s':>9}")
    for dtype in args.dtypes:
        peak = max(rate for name, rate in peaks[dtype].items() if name != "torch.mm")
        best_peak = max(peaks[dtype].values())
        for enc, dec in shapes:
            flops = train_flops(enc, dec, args.batch)
            rates = {}
            for fw in args.frameworks:
                if (fw, dtype, enc, dec) not in best:
                    continue
                r = best[(fw, dtype, enc, dec)]
                rates[fw] = args.batch * (enc + dec) / r["step_s"]
                achieved = flops / r["step_s"]
                print(f"{dtype:>8} {f'{enc}/{dec}':>8} {fw:>17} {rates[fw]:9.0f} "
                      f"{args.batch * dec / r['step_s']:9.0f} {achieved / 1e9:8.1f} "
                      f"{achieved / peak:6.1%} {achieved / best_peak:6.1%} "
                      f"{r['peak_rss_mib']:9.0f} {r['compile_s']:9.1f}")
            if "jax" in rates and "torch" in rates:
                print(f"{'':>8} {'':>8} {'ratio':>17} {rates['jax'] / rates['torch']:8.2f}x "
                      "(flan_jax / HF)")
            for fw, what in (("jax-xla", "MKL products / XLA's dots"),
                             ("jax-xla-adafactor", "Adafactor kernel / XLA's update")):
                if "jax" in rates and fw in rates:
                    print(f"{'':>8} {'':>8} {'ratio':>17} {rates['jax'] / rates[fw]:8.2f}x "
                          f"({what})")


if __name__ == "__main__":
    main()
