"""Readers and writers for foreign checkpoint formats (Hugging Face, t5x).

`flan_jax.interop.checkpoints` is the entry point; these modules hold one format each
(`hf_tokenizer`: the tokenizer files of a Hugging Face export).
"""
