"""flan_jax: Flan-style instruction finetuning in JAX."""

__version__ = "0.1.0"
