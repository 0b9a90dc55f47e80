"""The trainer's pieces: the pure train step, Adafactor, the mesh and shardings, training
checkpoints, the input pipeline, in-loop evaluation, reports, and the run-directory and
configuration checks. `flan_jax.train` wires them together."""
