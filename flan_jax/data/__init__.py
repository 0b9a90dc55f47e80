"""The data side: the YAML task schema and registry, sources and parsers, templates,
vocabularies, mixing rates, the bad-row policy, task metrics, and the collections (Flan
2021, T0-SF, NIv2, CoT, Dialog, the embedded demo). Imports nothing of the model or the
trainer."""
