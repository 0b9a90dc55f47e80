"""The demo run (`make demo`, `python -m flan_jax.demo`) and its task-count scaling
experiment (`make demo-scaling`, `flan_jax.demo.scaling`): entry points over `flan_jax.train`.
The demo's families, generators and vocabulary are data: `flan_jax.data.demo`."""
