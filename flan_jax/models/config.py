"""T5 v1.1 / Flan-T5 model configuration: sizes, validation, Hugging Face config.json mapping.

The config is a frozen (hashable) dataclass so it can be a static argument of jitted
functions. Gin is kept out of this module: gin files bind `T5Config` through gin's dynamic
registration (see gin/models/*.gin).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

REMAT_POLICIES = ("none", "full", "minimal", "dots")
_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True, kw_only=True)
class T5Config:
    """Hyper-parameters of an encoder-decoder T5 v1.1 (gated-GELU, untied logits).

    `dtype` is the activation/computation dtype, `param_dtype` the storage dtype of the
    parameters. `remat_policy` chooses what each layer keeps for the backward pass:
    'none' (keep everything), 'full' (recompute everything), 'minimal' (keep matmul
    outputs without batch dimensions) or 'dots' (keep all matmul outputs).
    `num_decoder_layers=None` means "as many as the encoder". `scan_layers` runs each
    stack's layers as one scanned loop over stacked parameters (t5x's `scan_layers`):
    compile time independent of depth. None (the default) means on wherever JAX's default
    backend is an accelerator (GPU, TPU) and off on a CPU, where the loop costs speed and
    compiles are small.
    """

    vocab_size: int = 32128
    d_model: int
    d_ff: int
    num_layers: int
    num_decoder_layers: int | None = None
    num_heads: int
    d_kv: int
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.0
    layer_norm_epsilon: float = 1e-6
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat_policy: str = "none"
    scan_layers: bool | None = None

    def __post_init__(self) -> None:
        if self.num_decoder_layers is None:
            object.__setattr__(self, "num_decoder_layers", self.num_layers)
        if self.scan_layers is None:
            object.__setattr__(self, "scan_layers", jax.default_backend() != "cpu")
        if not isinstance(self.scan_layers, bool):
            raise ValueError(f"T5Config.scan_layers must be True, False or None, "
                             f"got {self.scan_layers!r}")
        for name in ("vocab_size", "d_model", "d_ff", "num_layers", "num_decoder_layers",
                     "num_heads", "d_kv", "relative_attention_num_buckets",
                     "relative_attention_max_distance"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"T5Config.{name} must be a positive int, got {value!r}")
        if self.relative_attention_num_buckets % 4:
            raise ValueError("T5Config.relative_attention_num_buckets must be a multiple of 4, "
                             f"got {self.relative_attention_num_buckets}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise ValueError(f"T5Config.dropout_rate must be in [0, 1), got {self.dropout_rate}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in _DTYPES:
                raise ValueError(f"T5Config.{name} must be one of {_DTYPES}, "
                                 f"got {getattr(self, name)!r}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(f"T5Config.remat_policy must be one of {REMAT_POLICIES}, "
                             f"got {self.remat_policy!r}")

    @property
    def activation_dtype(self) -> jnp.dtype:
        """`dtype` as a numpy dtype object."""
        return jnp.dtype(self.dtype)

    @property
    def parameter_dtype(self) -> jnp.dtype:
        """`param_dtype` as a numpy dtype object."""
        return jnp.dtype(self.param_dtype)

    def replace(self, **changes: Any) -> T5Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], **overrides: Any) -> T5Config:
        """Builds a config from a Hugging Face T5 `config.json` dict.

        Only T5 v1.1-style models (gated-GELU, untied embeddings) are supported; anything
        else raises ValueError naming the offending field. `overrides` set fields that
        config.json does not carry (dtype, remat_policy, ...).
        """
        act = hf.get("feed_forward_proj", "relu")
        if act != "gated-gelu":
            raise ValueError(f"config.json feed_forward_proj is {act!r}; only 'gated-gelu' "
                             "(T5 v1.1 / Flan-T5) is supported")
        if hf.get("tie_word_embeddings", True):
            raise ValueError("config.json tie_word_embeddings is true; T5 v1.1 / Flan-T5 "
                             "has untied logits (tie_word_embeddings: false)")
        missing = [k for k in ("d_model", "d_ff", "d_kv", "num_layers", "num_heads")
                   if k not in hf]
        if missing:
            raise ValueError(f"config.json lacks required field(s): {', '.join(missing)}")
        fields: dict[str, Any] = {
            "vocab_size": hf.get("vocab_size", 32128),
            "d_model": hf["d_model"],
            "d_ff": hf["d_ff"],
            "d_kv": hf["d_kv"],
            "num_layers": hf["num_layers"],
            "num_decoder_layers": hf.get("num_decoder_layers") or hf["num_layers"],
            "num_heads": hf["num_heads"],
            "relative_attention_num_buckets": hf.get("relative_attention_num_buckets", 32),
            "relative_attention_max_distance": hf.get("relative_attention_max_distance", 128),
            "dropout_rate": hf.get("dropout_rate", 0.0),
            "layer_norm_epsilon": hf.get("layer_norm_epsilon", 1e-6),
        }
        fields.update(overrides)
        return cls(**fields)

    def to_hf_dict(self) -> dict[str, Any]:
        """The Hugging Face `config.json` dict describing this model (T5ForConditionalGeneration)."""
        return {
            "architectures": ["T5ForConditionalGeneration"],
            "model_type": "t5",
            "vocab_size": self.vocab_size,
            "d_model": self.d_model,
            "d_ff": self.d_ff,
            "d_kv": self.d_kv,
            "num_layers": self.num_layers,
            "num_decoder_layers": self.num_decoder_layers,
            "num_heads": self.num_heads,
            "relative_attention_num_buckets": self.relative_attention_num_buckets,
            "relative_attention_max_distance": self.relative_attention_max_distance,
            "dropout_rate": self.dropout_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "feed_forward_proj": "gated-gelu",
            "dense_act_fn": "gelu_new",
            "is_gated_act": True,
            "tie_word_embeddings": False,
            "is_encoder_decoder": True,
            "initializer_factor": 1.0,
            "use_cache": True,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "decoder_start_token_id": 0,
        }


_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(vocab_size=384, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8),
    "small": dict(d_model=512, d_ff=1024, num_layers=8, num_heads=6, d_kv=64),
    "base": dict(d_model=768, d_ff=2048, num_layers=12, num_heads=12, d_kv=64),
    "large": dict(d_model=1024, d_ff=2816, num_layers=24, num_heads=16, d_kv=64),
    "xl": dict(d_model=2048, d_ff=5120, num_layers=24, num_heads=32, d_kv=64),
    "xxl": dict(d_model=4096, d_ff=10240, num_layers=24, num_heads=64, d_kv=64),
}
SIZES = tuple(_SIZES)


def get_config(size: str, **overrides: Any) -> T5Config:
    """The named Flan-T5 size ('tiny' is a test-only toy), with optional field overrides."""
    if size not in _SIZES:
        raise ValueError(f"unknown T5 size {size!r}; known sizes: {', '.join(SIZES)}")
    return T5Config(**{**_SIZES[size], **overrides})
