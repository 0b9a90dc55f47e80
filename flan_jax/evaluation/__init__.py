"""The Flan paper's held-out evaluation: MMLU, BBH, TyDiQA GoldP and MGSM.

- `benchmarks`: task lists, languages, data layouts and environment variables.
- `prompts`: parser functions that read the exemplar files (BBH cot-prompts, MMLU-CoT
  JSON, MGSM exemplars) for the task YAML in `tasks/eval/`.
- `answers`: answer extraction, normalisation and self-consistency voting.
- `scoring`: chance rates, the normalized average and the published Flan-T5 numbers.
- `report`: Markdown, CSV, PNG and predictions JSONL.

The runner is `python -m flan_jax.eval`.
"""
