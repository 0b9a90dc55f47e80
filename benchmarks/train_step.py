"""Training throughput: flan_jax vs Hugging Face transformers (PyTorch) on the same device.

Both train a randomly initialised Flan-T5 of the chosen size with Adafactor in the t5x
setting (decay rate 0.8, update clipping 1.0, parameter-scale multiply, factored second
moments, no momentum, constant LR 5e-4) on the same random full-length batches (no
padding), in two precisions (`--dtypes`):

- float32: every operation in float32.
- bfloat16: mixed precision as the paper recipes train: float32 parameters and optimizer,
  activations and matmuls in bf16 (float32 accumulation). flan_jax runs with
  `dtype='bfloat16'` (t5x's ACTIVATION_DTYPE); HF runs its forward under
  `torch.autocast(device, bfloat16)` (what `Trainer(bf16=True)` does).

- flan_jax: `flan_jax.training.step.make_train_step` (the trainer's step: forward, z-loss
  cross-entropy, backward, `flan_jax.training.optimizers.make_optimizer`'s Adafactor), jitted with
  the state donated; layers scanned where the model scans them by default (GPU, TPU).
  Compilation is timed apart and excluded.
- torch / torch-compile: `T5ForConditionalGeneration(labels=...)` (given its own `lm_head`:
  transformers 5 ties it to the input embedding, which Flan-T5 does not), forward +
  backward + `transformers.optimization.Adafactor(scale_parameter=True,
  relative_step=False, decay_rate=-0.8, clip_threshold=1.0, beta1=None)`, eager or under
  `torch.compile` (its compilation, in the first steps, is excluded too).

`--backend cpu` (the default): flan-t5-small dimensions, batch 8, lengths 64/64 and
256/64, torch on `--threads` threads; each (framework, lengths) pair runs in its own
subprocess round-robin `--repeats` times and the best throughput counts (the machine is
shared); peak memory is the process's resident set. Both run with the trainer's host
allocator setting (`flan_jax.kernels.host_memory.keep_freed_memory`). The CPU's model and the CPU
specialisations in use (`flan_jax.kernels`) are printed.

`--backend gpu` / `tpu`: sizes `--sizes` (default small, base, large, xl), lengths 512/128
(and the paper's 2048/512 with `--lengths`), batch per size 64/64/32/16 at 512/128,
scaled down in proportion to the tokens at longer lengths (`--batch` overrides); one
subprocess per row; peak memory is the device's high-water mark. A row that runs out of
memory or fails says so and the rest go on.

MFU = model FLOPs/s / peak. Model FLOPs per step are counted exactly for the matmuls
(`train_flops`: every projection, attention score and value product, MLP and logits,
forward x 3 for forward + backward; no recomputation counted). The peak is the best rate of
a square product (2048 on CPUs, 8192 on accelerators) in the row's precision (bf16
operands, float32 accumulation for bfloat16) through the kernels flan_jax computes with:
`jnp.dot`, and on an Intel CPU in float32 flan_jax's MKL product, measured in the same
run; MFU* also counts `torch.mm`. `--frameworks jax-xla` (CPU) adds flan_jax with
`FLAN_JAX_CPU_MATMUL=0`, `jax-xla-adafactor` with `FLAN_JAX_CPU_ADAFACTOR=0`,
`jax-xla-bf16` with `FLAN_JAX_CPU_BF16_MATMUL=0` (bfloat16 rows only) and `jax-xla-bias`
with `FLAN_JAX_CPU_BIAS_SUM=0`, for the speed-up of each CPU specialisation in the same run.

    python benchmarks/train_step.py [--backend cpu|gpu|tpu] [--sizes small base]
        [--lengths 512/128 2048/512] [--dtypes bfloat16 float32] [--repeats 2] [--steps 5]
        [--frameworks jax torch torch-compile jax-xla jax-xla-adafactor jax-xla-bf16
                      jax-xla-bias] [--json FILE]
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
                     "jax-xla-adafactor": {"FLAN_JAX_CPU_ADAFACTOR": "0"},
                     "jax-xla-bf16": {"FLAN_JAX_CPU_BF16_MATMUL": "0"},
                     "jax-xla-bias": {"FLAN_JAX_CPU_BIAS_SUM": "0"}}
# What each CPU-switch row measures, as `jax` / that row.
SWITCH_RATIOS = {"jax-xla": "MKL products / XLA's dots",
                 "jax-xla-adafactor": "Adafactor kernel / XLA's update",
                 "jax-xla-bf16": "bf16 product VJP / XLA's autodiff",
                 "jax-xla-bias": "bias-sum VJP / XLA's reduction"}
TORCH = ("torch", "torch-compile")
JAX_PLATFORM = {"cpu": "cpu", "gpu": "cuda", "tpu": "tpu"}
BATCH_AT_640_TOKENS = {"tiny": 64, "small": 64, "base": 64, "large": 32, "xl": 16, "xxl": 8}


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


def _config(size: str, dtype: str = "float32", **overrides):
    from flan_jax.models import t5

    return t5.get_config(size, dtype=dtype, **overrides)


def _size_flops(size: str, enc: int, dec: int, batch: int) -> float:
    c = _config(size, scan_layers=False)  # (no backend query: the parent leaves the device be)
    return train_flops(enc, dec, batch, c.d_model, c.d_ff, c.num_layers, c.num_heads, c.d_kv,
                       c.vocab_size)


def _timed(step, steps: int) -> float:
    """Best seconds per step over `steps` calls of `step()` (which must block)."""
    best = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def _device_peak_memory_mib(framework: str) -> float:
    """The device's memory high-water mark (accelerators) or this process's peak RSS."""
    if framework in TORCH:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    else:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            return stats["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_peak(size: int, threads: int, dtype: str) -> dict:
    import torch

    from flan_jax.training.flops import matmul_rates

    rates = matmul_rates(dtype, size, repeats=5)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(threads)
    ta = torch.randn(size, size, dtype=getattr(torch, dtype), device=device)
    tb = torch.randn(size, size, dtype=getattr(torch, dtype), device=device)

    def mm() -> None:
        ta @ tb
        if device == "cuda":
            torch.cuda.synchronize()

    mm()
    rates["torch.mm"] = 2.0 * size ** 3 / _timed(mm, 5)
    return {"rates": rates, "device": _device_name()}


def _device_name() -> str:
    import jax

    from flan_jax import kernels

    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"CPU: {kernels.cpu_features().summary}, {os.cpu_count()} CPUs"
    return f"{device.device_kind} ({device.platform})"


def _batch(enc_len: int, dec_len: int, batch: int, vocab: int):
    import numpy as np

    rng = np.random.default_rng(0)
    inputs = rng.integers(2, vocab, (batch, enc_len), dtype=np.int32)
    targets = rng.integers(2, vocab, (batch, dec_len), dtype=np.int32)
    return inputs, targets


def worker_jax(size: str, enc_len: int, dec_len: int, batch: int, steps: int,
               dtype: str) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from flan_jax.training.compiler import compiler_options
    from flan_jax.training.optimizers import make_optimizer
    from flan_jax.training.step import init_train_state, make_train_step

    config = _config(size, dtype)
    optimizer = make_optimizer(learning_rate=ADAFACTOR["lr"], decay_rate=ADAFACTOR["decay_rate"],
                               clipping_threshold=ADAFACTOR["clipping"])
    state = jax.jit(lambda: init_train_state(config, optimizer, jax.random.key(0)))()
    inputs, targets = _batch(enc_len, dec_len, batch, config.vocab_size)
    data = {
        "encoder_input_tokens": jnp.asarray(inputs),
        "decoder_input_tokens": jnp.asarray(np.pad(targets, ((0, 0), (1, 0)))[:, :-1]),
        "decoder_target_tokens": jnp.asarray(targets),
        "decoder_loss_weights": jnp.ones(targets.shape, jnp.int32),
    }
    step = jax.jit(make_train_step(config, optimizer), donate_argnums=0,
                   compiler_options=compiler_options())
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
            "scan_layers": config.scan_layers,
            "params": sum(x.size for x in jax.tree_util.tree_leaves(holder[0].params))}


def worker_torch(size: str, enc_len: int, dec_len: int, batch: int, steps: int, threads: int,
                 dtype: str, compiled: bool) -> dict:
    import torch
    import transformers
    from transformers.optimization import Adafactor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    hf_config = transformers.T5Config(**_config(size, scan_layers=False).to_hf_dict())
    with torch.device(device):  # initialised where it trains
        model = transformers.T5ForConditionalGeneration(hf_config).train()
    # transformers 5 ties lm_head to the input embedding whatever the config says; Flan-T5
    # (and flan_jax) keep them apart, so HF gets its own lm_head: the same parameters to
    # differentiate and update.
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
    optimizer = Adafactor(model.parameters(), lr=ADAFACTOR["lr"], scale_parameter=True,
                          relative_step=False, warmup_init=False,
                          decay_rate=-ADAFACTOR["decay_rate"],
                          clip_threshold=ADAFACTOR["clipping"], beta1=None, weight_decay=0.0)
    forward = torch.compile(model) if compiled else model
    inputs, targets = _batch(enc_len, dec_len, batch, hf_config.vocab_size)
    input_ids = torch.from_numpy(inputs).long().to(device)
    labels = torch.from_numpy(targets).long().to(device)
    last = {}
    mixed = dtype == "bfloat16"

    def run() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=mixed):
            loss = forward(input_ids=input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last["loss"] = float(loss)  # synchronises with the device

    start = time.perf_counter()
    run()
    run()  # warm-up; torch.compile compiles forward and backward in these
    compile_s = time.perf_counter() - start if compiled else 0.0
    seconds = _timed(run, steps)
    return {"step_s": seconds, "compile_s": compile_s, "loss": last["loss"],
            "params": sum(p.numel() for p in model.parameters())}


def _worker_main(args: argparse.Namespace) -> None:
    from flan_jax.kernels.host_memory import keep_freed_memory

    if args.backend == "cpu":
        keep_freed_memory()
    if args.worker == "peak":
        result = worker_peak(args.matmul_size, args.threads, args.dtype)
    elif args.worker in FLAN_JAX_SWITCHES:
        result = worker_jax(args.size, args.enc, args.dec, args.batch, args.steps, args.dtype)
    else:
        result = worker_torch(args.size, args.enc, args.dec, args.batch, args.steps,
                              args.threads, args.dtype, args.worker == "torch-compile")
    result["peak_mib"] = _device_peak_memory_mib(args.worker)
    print("RESULT " + json.dumps(result), flush=True)


def _run_worker(backend: str, *extra: str, switches: dict[str, str] | None = None) -> dict:
    """A worker's RESULT dict, or {'error': the last line it printed} if it failed."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_PLATFORMS": JAX_PLATFORM[backend],
           **(switches or {})}
    proc = subprocess.run([sys.executable, __file__, "--backend", backend, *extra],
                          capture_output=True, text=True, env=env, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    oom = any("RESOURCE_EXHAUSTED" in line or "out of memory" in line.lower()
              for line in lines)
    return {"error": "out of memory" if oom else (lines[-1][:200] if lines else "no output"),
            "log": "\n".join(lines[-30:])}


def _describe(args: argparse.Namespace, device: str) -> str:
    """The device (as a worker saw it), the CPU specialisations and the library versions.
    The parent process never initialises the accelerator: the workers need all of it."""
    import jax
    import torch
    import transformers

    from flan_jax import kernels

    if args.backend == "cpu":
        on = [n for n in kernels.NAMES if kernels.suits_cpu(n, kernels.cpu_features())]
        device += (f"; CPU specialisations for this CPU: {', '.join(on) or 'none'}; torch "
                   f"{args.threads} threads")
    return (f"{device}; jax {jax.__version__}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}; best of {args.repeats} round(s) x {args.steps} steps")


def _rows(args: argparse.Namespace) -> list[tuple[str, str, int, int, int]]:
    """(size, dtype, enc, dec, batch) of every measurement."""
    rows = []
    for size in args.sizes:
        for dtype in args.dtypes:
            for enc, dec in (tuple(int(x) for x in s.split("/")) for s in args.lengths):
                batch = args.batch or max(1, BATCH_AT_640_TOKENS[size] * 640 // (enc + dec))
                rows.append((size, dtype, enc, dec, batch))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=list(JAX_PLATFORM))
    parser.add_argument("--sizes", nargs="+", help="model sizes (cpu: small; else small "
                        "base large xl)")
    parser.add_argument("--lengths", nargs="+", help="INPUTS/TARGETS lengths (cpu: 64/64 "
                        "256/64; else 512/128)")
    parser.add_argument("--batch", type=int, help="batch size (cpu: 8; else per size)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per worker")
    parser.add_argument("--repeats", type=int, default=2, help="round-robin rounds")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (cpu)")
    parser.add_argument("--matmul-size", type=int, help="peak product size (cpu 2048, "
                        "else 8192)")
    parser.add_argument("--frameworks", nargs="+", default=["jax", "torch"],
                        choices=[*FLAN_JAX_SWITCHES, *TORCH],
                        help="jax-xla*: flan_jax with one CPU specialisation off (CPU only): "
                             + "; ".join(f"{k}: {v}" for k, v in SWITCH_RATIOS.items()))
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        choices=["float32", "bfloat16"], help="precisions to compare")
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=["peak", *FLAN_JAX_SWITCHES, *TORCH],
                        help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--enc", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dec", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cpu = args.backend == "cpu"
    args.sizes = args.sizes or (["small"] if cpu else ["small", "base", "large", "xl"])
    args.lengths = args.lengths or (["64/64", "256/64"] if cpu else ["512/128"])
    args.batch = args.batch or (8 if cpu else None)
    args.matmul_size = args.matmul_size or (2048 if cpu else 8192)
    if args.worker:
        _worker_main(args)
        return

    common = ["--steps", str(args.steps), "--threads", str(args.threads)]
    best: dict[tuple, dict] = {}
    peaks: dict[str, dict[str, float]] = {dtype: {} for dtype in args.dtypes}  # FLOP/s
    for round_ in range(args.repeats):
        for dtype in args.dtypes:
            r = _run_worker(args.backend, "--worker", "peak", "--matmul-size",
                            str(args.matmul_size), "--dtype", dtype, *common)
            if "error" in r:
                raise SystemExit(f"measuring the matmul peak failed:\n{r['log']}")
            if not round_ and dtype == args.dtypes[0]:
                args.device = _describe(args, r["device"])
                print(args.device, flush=True)
            peaks[dtype] = {k: max(v, peaks[dtype].get(k, 0.0)) for k, v in r["rates"].items()}
        for size, dtype, enc, dec, batch in _rows(args):
            for fw in args.frameworks:
                if fw in SWITCH_RATIOS and (not cpu or (fw == "jax-xla-bf16"
                                                        and dtype == "float32")):
                    continue
                key = (fw, size, dtype, enc, dec, batch)
                if best.get(key, {}).get("error") == "out of memory":
                    continue
                r = _run_worker(args.backend, "--worker", fw, "--size", size, "--enc",
                                str(enc), "--dec", str(dec), "--batch", str(batch),
                                "--dtype", dtype, *common, switches=FLAN_JAX_SWITCHES.get(fw))
                label = f"  round {round_ + 1}: {fw:13s} {size:5s} {dtype} {enc}/{dec} x{batch}:"
                if "error" in r:
                    print(f"{label} {r['error']}", flush=True)
                    best.setdefault(key, r)
                    continue
                print(f"{label} {r['step_s']:.3f} s/step, loss {r['loss']:.3f}, "
                      f"{r['params']:,} params, peak {r['peak_mib']:.0f} MiB, compile "
                      f"{r['compile_s']:.1f} s", flush=True)
                if "step_s" not in best.get(key, {}) or r["step_s"] < best[key]["step_s"]:
                    best[key] = r
    _report(args, best, peaks)


def _report(args: argparse.Namespace, best: dict[tuple, dict],
            peaks: dict[str, dict[str, float]]) -> None:
    print()
    unit = 1e9 if args.backend == "cpu" else 1e12
    unit_name = "GFLOP/s" if args.backend == "cpu" else "TFLOP/s"
    for dtype, p in peaks.items():
        rates = ", ".join(f"{name} {rate / unit:.1f}" for name, rate in p.items())
        print(f"measured {dtype} matmul peak ({args.matmul_size}^3, {unit_name}): {rates}")
    print("MFU: against the best of the products flan_jax computes with in the row's precision; "
          "MFU*: against those and torch.mm")
    print(f"{'size':>5} {'dtype':>8} {'lengths':>8} {'batch':>5} {'framework':>17} "
          f"{'tokens/s':>9} {'seq/s':>7} {unit_name:>8} {'MFU':>6} {'MFU*':>6} "
          f"{'peak MiB':>9} {'compile s':>9}")
    records = []
    for size, dtype, enc, dec, batch in _rows(args):
        flops = _size_flops(size, enc, dec, batch)
        peak = max(rate for name, rate in peaks[dtype].items() if name != "torch.mm")
        best_peak = max(peaks[dtype].values())
        rates = {}
        for fw in args.frameworks:
            r = best.get((fw, size, dtype, enc, dec, batch))
            if r is None:
                continue
            head = f"{size:>5} {dtype:>8} {f'{enc}/{dec}':>8} {batch:>5} {fw:>17}"
            records.append({"framework": fw, "size": size, "dtype": dtype, "lengths": [enc, dec],
                            "batch": batch, **{k: v for k, v in r.items() if k != "log"}})
            if "error" in r:
                print(f"{head} {r['error']}")
                continue
            rates[fw] = batch * (enc + dec) / r["step_s"]
            achieved = flops / r["step_s"]
            print(f"{head} {rates[fw]:9.0f} {batch / r['step_s']:7.1f} {achieved / unit:8.1f} "
                  f"{achieved / peak:6.1%} {achieved / best_peak:6.1%} {r['peak_mib']:9.0f} "
                  f"{r['compile_s']:9.1f}")
        for fw, what in {"torch": "flan_jax / HF eager",
                         "torch-compile": "flan_jax / HF torch.compile",
                         **SWITCH_RATIOS}.items():
            if "jax" in rates and fw in rates:
                print(f"{'':>46} ratio {rates['jax'] / rates[fw]:8.2f}x ({what})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "peaks": peaks, "rows": records}, f, indent=1)


if __name__ == "__main__":
    main()
