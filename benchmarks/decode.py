"""Greedy decoding throughput: flan_jax vs Hugging Face transformers `generate`, same device.

Both decode the same randomly initialised Flan-T5-sized model (weights exported from
flan_jax to a Hugging Face directory and loaded back by transformers) on the same random
inputs, producing exactly `--new-tokens` tokens per sequence (EOS never stops a sequence).
Throughput is generated tokens per second of wall time, encoder included. flan_jax's
compile time is reported apart and excluded from its throughput. The two libraries run
alternately `--repeats` times and the fastest run of each counts, which keeps the ratio
meaningful on a machine that other processes share. On a GPU both run there (torch in
bf16 autocast and flan_jax with bf16 activations when `--dtype bfloat16`), JAX holding
half the device's memory and torch the rest.

    python benchmarks/decode.py [--size small] [--batch-sizes 8 32] [--input-length 256]
                                [--new-tokens 64] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # torch shares a GPU

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from flan_jax.interop.checkpoints import save_hf  # noqa: E402
from flan_jax.models import (
    decoding,  # noqa: E402
    t5,  # noqa: E402
)

NO_EOS = -1  # an id no token has: sequences run to the full length


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of `fn`."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(batch: int, config: t5.T5Config, params: dict,
            hf_model: transformers.T5ForConditionalGeneration, args: argparse.Namespace
            ) -> tuple[float, float, float]:
    """(flan_jax seconds, transformers seconds, flan_jax compile seconds) for one batch size."""
    rng = np.random.default_rng(batch)
    tokens = rng.integers(2, config.vocab_size, (batch, args.input_length), dtype=np.int32)
    tokens[:, -1] = decoding.EOS_ID
    inputs = jax.device_put(tokens)
    start = time.perf_counter()
    compiled = decoding.greedy_decode.lower(params, inputs, config=config,
                                            max_decode_length=args.new_tokens,
                                            eos_id=NO_EOS).compile()
    compile_s = time.perf_counter() - start
    device = hf_model.device
    input_ids = torch.from_numpy(tokens.astype(np.int64)).to(device)
    generation_config = transformers.GenerationConfig(
        max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False,
        num_beams=1, decoder_start_token_id=0, pad_token_id=0, eos_token_id=None)

    def hf_generate() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                    enabled=args.dtype == "bfloat16"):
            out = hf_model.generate(input_ids=input_ids, attention_mask=input_ids > 0,
                                    generation_config=generation_config)
        return out.cpu()  # waits for the device

    def flan_jax_generate() -> jax.Array:
        return jax.block_until_ready(compiled(params, inputs))

    if hf_generate().shape[1] != args.new_tokens + 1:  # also the warm-up run
        raise RuntimeError("transformers did not generate exactly --new-tokens tokens")
    flan_jax_generate()  # warm-up
    # Alternate the two so that load from other processes hits both alike; keep the best.
    runs = [(timed(flan_jax_generate), timed(hf_generate)) for _ in range(args.repeats)]
    return min(r[0] for r in runs), min(r[1] for r in runs), compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=t5.SIZES)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--input-length", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="activations (flan_jax) / autocast (torch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    config = t5.get_config(args.size, dtype=args.dtype)
    params = jax.jit(t5.init_params, static_argnums=0)(config, jax.random.key(0))
    with tempfile.TemporaryDirectory() as directory:
        save_hf(directory, jax.tree.map(np.asarray, params), config)
        hf_model = transformers.T5ForConditionalGeneration.from_pretrained(directory).eval()
    hf_model = hf_model.to(device)

    jax_device = jax.devices()[0]
    torch_device = torch.cuda.get_device_name() if device == "cuda" else f"{args.threads} threads"
    print(f"{args.size} model, {args.dtype}, input {args.input_length} tokens, "
          f"{args.new_tokens} new tokens; jax {jax.__version__} on {jax_device.device_kind}, "
          f"torch {torch.__version__} on {torch_device}, transformers {transformers.__version__}")
    print(f"{'batch':>5} {'flan_jax tok/s':>15} {'HF tok/s':>10} {'ratio':>6} {'compile s':>10}")
    for batch in args.batch_sizes:
        ours, theirs, compile_s = measure(batch, config, params, hf_model, args)
        generated = batch * args.new_tokens
        print(f"{batch:>5} {generated / ours:>15.1f} {generated / theirs:>10.1f} "
              f"{theirs / ours:>6.2f} {compile_s:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
