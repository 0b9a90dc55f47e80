"""The train step as GPUs and TPUs get it, lowered here without the hardware: no CPU custom
call, no optimisation barrier, no bf16 scatter (on TPU no scatter at all), and the CPU
lowering of the same step does hold the CPU specialisations (`flan_jax.kernels`)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest

from flan_jax import kernels
from flan_jax.models import t5
from flan_jax.training.optimizers import make_optimizer
from flan_jax.training.step import init_train_state, make_train_step

# d_model 128: Adafactor factors the matrices (the CPU kernel's share).
CONFIG = t5.get_config("tiny", vocab_size=256, d_model=128, d_ff=256, num_heads=2, d_kv=64)


def _hlo(platform: str, dtype: str, scan_layers: bool) -> str:
    config = CONFIG.replace(dtype=dtype, scan_layers=scan_layers)
    optimizer = make_optimizer(learning_rate=1e-3)
    state = jax.eval_shape(lambda: init_train_state(config, optimizer, jax.random.key(0)))
    batch = {k: jax.ShapeDtypeStruct((2, 16), jnp.int32) for k in (
        "encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
        "decoder_loss_weights")}
    rng = jax.eval_shape(lambda: jax.random.key(1))
    traced = jax.jit(make_train_step(config, optimizer)).trace(state, batch, rng)
    return traced.lower(lowering_platforms=(platform,)).as_text(dialect="hlo")


def _cpu_pieces(hlo: str) -> dict[str, list[str]]:
    """What must not reach an accelerator: custom calls, barriers, bf16 scatters."""
    scatters = [line.strip() for line in hlo.splitlines() if " scatter(" in line]
    return {"custom calls": sorted(set(re.findall(r'custom_call_target="([^"]+)"', hlo))),
            "barriers": [line.strip() for line in hlo.splitlines() if "opt-barrier(" in line],
            "bf16 scatters": [s for s in scatters if re.search(r"= bf16\[", s)],
            "scatters": scatters}


@pytest.mark.parametrize("platform, dtype, scan_layers", [
    ("cuda", "bfloat16", True), ("cuda", "float32", True), ("tpu", "bfloat16", True),
    ("cuda", "bfloat16", False)])
def test_accelerator_lowering_holds_no_cpu_piece(platform: str, dtype: str,
                                                 scan_layers: bool) -> None:
    hlo = _hlo(platform, dtype, scan_layers)
    pieces = _cpu_pieces(hlo)
    assert pieces["custom calls"] == []
    assert pieces["barriers"] == []
    assert pieces["bf16 scatters"] == []
    if platform == "tpu":  # the embedding is a one-hot product there
        assert pieces["scatters"] == []
    else:  # the float32 embedding gradient, and nothing else
        assert len(pieces["scatters"]) == 1 and "f32[256,128]" in pieces["scatters"][0]
    if scan_layers:  # each stack a loop, forward and backward
        assert hlo.count(" while(") == 4


def test_cpu_lowering_of_the_same_step_holds_the_cpu_specialisations() -> None:
    """The checks above can fail: on this CPU the same step lowers with its
    specialisations (where this machine's CPU takes them)."""
    bf16 = _cpu_pieces(_hlo("cpu", "bfloat16", False))
    f32 = _cpu_pieces(_hlo("cpu", "float32", False))
    if kernels.enabled("bf16_matmul", jnp.bfloat16):
        assert bf16["barriers"]
    if kernels.enabled("adafactor"):
        assert "flan_jax_adafactor" in f32["custom calls"]
    if kernels.enabled("matmul", jnp.float32):
        assert "flan_jax_matmul" in f32["custom calls"]
    if not any(kernels.enabled(n, d) for n, d in (("bf16_matmul", jnp.bfloat16),
                                                  ("adafactor", None))):
        pytest.skip("this CPU takes no specialisation")


def test_cpu_choice_follows_vendor_and_features(tmp_path) -> None:
    """MKL products and the bias sum on Intel only (no win on AMD Zen 4); the bf16 form
    where the CPU has bf16 matrix instructions."""
    def cpu(vendor: str, flags: str) -> kernels.CpuFeatures:
        info = tmp_path / f"{vendor}-{len(flags)}"
        info.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\nmodel name\t: test\n"
                        f"flags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
        kernels.cpu_features.cache_clear()
        try:
            return kernels.cpu_features(info)
        finally:
            kernels.cpu_features.cache_clear()

    intel_amx = cpu("GenuineIntel", "avx512f amx_bf16 amx_tile")
    amd_zen4 = cpu("AuthenticAMD", "avx512f avx512_bf16")
    old_intel = cpu("GenuineIntel", "avx2")
    chosen = {name: [c.vendor for c in (intel_amx, amd_zen4, old_intel)
                     if kernels.suits_cpu(name, c)] for name in kernels.NAMES}
    if intel_amx.machine == "x86_64":
        assert chosen["matmul"] == ["GenuineIntel", "GenuineIntel"]
        assert chosen["bias_sum"] == ["GenuineIntel", "GenuineIntel"]
        assert chosen["adafactor"] == ["GenuineIntel", "AuthenticAMD", "GenuineIntel"]
    assert chosen["bf16_matmul"] == ["GenuineIntel", "AuthenticAMD"]
    assert "amx_bf16" in intel_amx.summary and intel_amx.model == "test"
