"""Importing this module registers the whole YAML catalog with seqio.

Use it as t5x's MIXTURE_OR_TASK_MODULE (`--gin.MIXTURE_OR_TASK_MODULE="'flan_jax.catalog'"`)
or `import flan_jax.catalog` before `seqio.get_mixture_or_task(...)`.
"""

from flan_jax.data.registry import register_catalog

CATALOG = register_catalog()
