"""Parsers and helpers for the task collections of the catalog (tasks/<collection>/)."""
