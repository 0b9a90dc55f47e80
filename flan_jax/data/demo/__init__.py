"""Embedded demo collection: procedurally generated Flan-style tasks for tiny CPU runs.

See :mod:`flan_jax.data.demo.generators` for the families and ``tasks/demo/*.yaml`` for
their templates.
"""

from flan_jax.data.demo.generators import FAMILIES, SPLITS

__all__ = ["FAMILIES", "SPLITS"]
